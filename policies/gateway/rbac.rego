# RBAC: who may call which route.
#
# The table is data.gateway.access (data.json): route name -> who. A route
# without a line is denied to everyone; tests check that every route of the
# endpoint table has one and that no line names an unknown route. Ownership of
# a session, wallet or manifest is checked by the upstream service, which gets
# the caller's id in x-user-id.
#
# Who, in order of privilege:
#   "anyone"         no token needed (chain data is public blockchain data)
#   "authenticated"  any verified token, whatever its roles
#   [roles]          a verified token holding one of these roles
#   "admin_or_self"  an admin, or the user the path names (users/{id})
#   "mfa"            a verified token whose second factor (TOTP) was verified;
#                    no role replaces it, not even admin
#
# The table is data (data.json) so that operators change who may call what
# without touching Rego.
package gateway

permitted(route, params, caller) if allows(data.gateway.access[route], params, caller)

allows("anyone", _, _)

allows("authenticated", _, caller) if caller.authenticated

allows("mfa", _, caller) if caller.mfa

allows("admin_or_self", _, caller) if is_admin(caller)

allows("admin_or_self", params, caller) if is_self(caller, params.id)

allows(roles, _, caller) if {
	is_array(roles)
	has_any_role(caller, roles)
}

needs_mfa(route) if data.gateway.access[route] == "mfa"
