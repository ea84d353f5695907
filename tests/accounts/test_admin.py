"""Admin edits of roles and plan: admin only, and each writes an audit record."""

import requests


def test_admin_sets_roles_with_an_audit_record(stack):
    user = stack.sign_up("audited@example.com")
    changed = stack.put(
        f"/users/{user['id']}/roles",
        {"roles": ["user", "operator"]},
        token=stack.admin_token("root-1"),
        headers={"X-Request-ID": "req-roles-0001"},
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["roles"] == ["operator", "user"]
    record = stack.db.audit.find_one({"target": user["id"], "action": "user.roles.set"})
    assert record["actor"] == "root-1"
    assert record["before"] == {"roles": ["user"]} and record["after"] == {"roles": ["operator", "user"]}
    assert record["request_id"] == "req-roles-0001" and record["at"] is not None and record["applied"] is True


def test_admin_sets_the_plan_with_an_audit_record(stack):
    user = stack.sign_up("plan@example.com")
    changed = stack.put(f"/users/{user['id']}/plan", {"plan": "enterprise"}, token=stack.admin_token())
    assert changed.status_code == 200 and changed.json()["plan"] == "enterprise"
    record = stack.db.audit.find_one({"target": user["id"], "action": "user.plan.set"})
    assert record["before"] == {"plan": "free"} and record["after"] == {"plan": "enterprise"}
    assert record["request_id"] == changed.headers["X-Request-ID"]


def test_a_user_cannot_change_roles_or_plan_not_even_their_own(stack):
    user = stack.sign_up("selfpromo@example.com")
    token = stack.sign_in("selfpromo@example.com")["access_token"]
    assert stack.put(f"/users/{user['id']}/roles", {"roles": ["admin"]}, token=token).status_code == 403
    assert stack.put(f"/users/{user['id']}/plan", {"plan": "pro"}, token=token).status_code == 403
    assert stack.put(f"/users/{user['id']}/plan", {"plan": "pro"}).status_code == 401
    stored = stack.db.users.find_one({"_id": user["id"]})
    assert stored["roles"] == ["user"] and stored["plan"] == "free"
    assert stack.db.audit.count_documents({"target": user["id"]}) == 0


def test_bad_admin_input_is_400_and_changes_nothing(stack):
    user = stack.sign_up("badadmin@example.com")
    admin = stack.admin_token()
    for path, body in (
        (f"/users/{user['id']}/plan", {"plan": "platinum"}),
        (f"/users/{user['id']}/roles", {"roles": "admin"}),
        (f"/users/{user['id']}/roles", {"roles": ["bad role!"]}),
        (f"/users/{user['id']}/roles", {"roles": []}),
        (f"/users/{user['id']}/roles", {"roles": ["user"], "plan": "pro"}),
    ):
        response = stack.put(path, body, token=admin)
        assert response.status_code == 400, (path, body, response.text)
        assert response.headers["Content-Type"] == "application/problem+json"
    assert stack.db.audit.count_documents({"target": user["id"]}) == 0
    assert stack.put("/users/u_missing/plan", {"plan": "pro"}, token=admin).status_code == 404


def test_a_role_with_a_line_feed_is_400_and_the_user_can_still_sign_in(stack):
    # ROLE_PATTERN's `$` matched before a final "\n": the admin got 200, and every
    # sign-in of the user was then a 500 (the token minter refuses such a role).
    user = stack.sign_up("role-lf@example.com")
    admin = stack.admin_token()
    for body in ({"roles": ["user\n"]}, {"roles": ["user", "admin\n"]}):
        response = stack.put(f"/users/{user['id']}/roles", body, token=admin)
        assert response.status_code == 400, (body, response.text)
        assert response.headers["Content-Type"] == "application/problem+json"
    created = stack.post("/users", {"email": "role-lf-2@example.com", "roles": ["ops\n"]}, token=admin)
    assert created.status_code == 400, created.text
    assert stack.db.users.find_one({"_id": user["id"]})["roles"] == ["user"]
    assert stack.sign_in("role-lf@example.com")["access_token"]


def test_admin_sign_up_with_roles_is_audited(stack):
    created = stack.post(
        "/users",
        {"email": "made-by-admin@example.com", "roles": ["operator"], "plan": "pro"},
        token=stack.admin_token("root-2"),
    )
    assert created.status_code == 201
    assert created.json()["roles"] == ["operator"] and created.json()["plan"] == "pro"
    record = stack.db.audit.find_one({"target": "made-by-admin@example.com", "action": "user.create"})
    assert record["actor"] == "root-2" and record["after"]["roles"] == ["operator"]


def test_admin_only_sign_up_mode():
    from .stack import Stack

    s = Stack(SIGNUP_MODE="admin")
    try:
        assert s.post("/users", {"email": "walkin@example.com"}).status_code == 401
        user_token = s.admin_token()  # an admin may
        assert s.post("/users", {"email": "walkin@example.com"}, token=user_token).status_code == 201
        from pdp.authn.tokens import mint_access_token

        from .stack import SECRET

        plain = mint_access_token(SECRET, "HS256", sub="u", roles=["user"], plan="free", mfa=False, lifetime_s=60)[0]
        refused = requests.post(
            s.api + "/users",
            json={"email": "other@example.com"},
            headers={"Authorization": f"Bearer {plain}"},
            timeout=10,
        )
        assert refused.status_code == 403
        assert s.db.users.count_documents({}) == 1
    finally:
        s.stop()
