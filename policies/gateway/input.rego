# The fields of `input` the policy reads, and nothing else.
#
# The PDP reads these references from the source to give the engine only
# these fields (each one is JSON the engine parses) and to key memoized
# decisions on exactly them; a bare `input` or `input.request`
# would make it pass, and key on, everything. Defaults keep a missing field a
# deny rather than an undefined decision. No clock (input.now_ns) and no
# randomness are read, so decisions can be memoized.
package gateway

default request_method := ""

request_method := input.request.method

default request_segments := []

request_segments := input.request.parsed_path

default request_client_ip := ""

request_client_ip := input.request.client_ip

default subject_authenticated := false

subject_authenticated := input.subject.authenticated

default subject_sub := ""

subject_sub := input.subject.sub

default subject_roles := []

subject_roles := input.subject.roles

default subject_plan := ""

subject_plan := input.subject.plan

default subject_mfa := false

subject_mfa := input.subject.mfa
