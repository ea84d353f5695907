"""Sign-up, the caller's own account, and bad input: real PDP, SecantusDB, Redis."""

import concurrent.futures

import pytest
import requests

from .stack import PUBLIC_BASE_URL


def test_sign_up_normalizes_the_email_and_starts_pending(stack):
    created = stack.post("/users", {"email": "  Carol.Doe@EXAMPLE.com ", "display_name": "Carol"})
    assert created.status_code == 201, created.text
    user = created.json()
    assert user["email"] == "carol.doe@example.com"
    assert user["status"] == "pending" and user["roles"] == ["user"] and user["plan"] == "free"
    assert created.headers["Location"] == f"/api/v1/users/{user['id']}"
    stored = stack.db.users.find_one({"_id": user["id"]})
    assert stored["email"] == "carol.doe@example.com" and stored["profile"] == {"display_name": "Carol"}


def test_the_same_mailbox_cannot_sign_up_twice(stack):
    stack.sign_up("dup@example.com")
    again = stack.post("/users", {"email": "DUP@example.com"})
    assert again.status_code == 409
    assert again.headers["Content-Type"] == "application/problem+json"
    assert stack.db.users.count_documents({"email": "dup@example.com"}) == 1


def test_parallel_sign_ups_of_one_email_create_one_user(stack):
    def sign_up(_):
        return stack.post("/users", {"email": "race@example.com"}).status_code

    with concurrent.futures.ThreadPoolExecutor(10) as pool:
        codes = list(pool.map(sign_up, range(10)))
    assert sorted(codes) == [201] + [409] * 9
    assert stack.db.users.count_documents({"email": "race@example.com"}) == 1


def test_first_magic_link_confirms_the_account(stack):
    user = stack.sign_up("confirm@example.com")
    tokens = stack.sign_in("confirm@example.com")
    me = stack.get("/users/me", token=tokens["access_token"]).json()
    assert me["id"] == user["id"] and me["status"] == "active" and me["last_login_at"]


def test_open_sign_up_cannot_choose_roles_or_plan(stack):
    response = stack.post("/users", {"email": "greedy@example.com", "roles": ["admin"]})
    assert response.status_code == 403
    assert stack.db.users.count_documents({"email": "greedy@example.com"}) == 0


@pytest.mark.parametrize(
    "body,content_type",
    [
        (b"{not json", "application/json"),
        (b"[1, 2]", "application/json"),
        (b'{"email": "a@example.com", "admin": true}', "application/json"),
        (b'{"email": "not-an-address"}', "application/json"),
        (b'{"email": "a@@example.com"}', "application/json"),
        (b'{"email": 42}', "application/json"),
        (b'{"email": "a@example.com", "email": "b@example.com"}', "application/json"),
        (b'{"email": "a@example.com", "display_name": "' + b"x" * 600 + b'"}', "application/json"),
        (b'{"email": "a@example.com", "display_name": "\xff\xfe"}', "application/json"),
        (b'{"email": "a@example.com", "display_name": "\\udc80"}', "application/json"),
        (b'{"email": "a@example.com"}', "text/plain"),
    ],
    ids=[
        "malformed",
        "not-an-object",
        "unknown-field",
        "invalid-email",
        "two-ats",
        "email-not-string",
        "duplicate-key",
        "too-long",
        "not-utf8",
        "lone-surrogate",
        "wrong-media-type",
    ],
)
def test_bad_sign_up_input_is_a_400_problem(stack, body, content_type):
    response = requests.post(stack.api + "/users", data=body, headers={"Content-Type": content_type}, timeout=10)
    assert response.status_code == 400, response.text
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.json()["status"] == 400


@pytest.mark.parametrize("email", ["lf\n@example.com", "lf@example\n.com"], ids=["local-part", "domain-label"])
def test_an_email_with_a_line_feed_is_a_400_not_a_second_account(stack, email):
    # Python's `$` also matches before a final "\n": "lf\n@example.com" passed the check,
    # became an account beside lf@example.com, and its mail died in the background
    # (no header may hold a line feed).
    if stack.db.users.count_documents({"email": "lf@example.com"}) == 0:
        stack.sign_up("lf@example.com")
    for path in ("/users", "/auth/login"):
        response = stack.post(path, {"email": email})
        assert response.status_code == 400, (path, response.text)
        assert response.headers["Content-Type"] == "application/problem+json"
        assert response.json()["detail"] == "email is not a valid address"
    assert stack.db.users.count_documents({"email": {"$regex": "^lf"}}) == 1


def test_put_me_changes_profile_fields_only(stack):
    stack.sign_up("profile@example.com")
    token = stack.sign_in("profile@example.com")["access_token"]
    changed = stack.put("/users/me", {"display_name": "Pro File", "locale": "de-CH"}, token=token)
    assert changed.status_code == 200
    assert changed.json()["profile"] == {"display_name": "Pro File", "locale": "de-CH"}
    for forbidden in (
        {"roles": ["admin"]},
        {"plan": "enterprise"},
        {"email": "other@example.com"},
        {"status": "active"},
    ):
        refused = stack.put("/users/me", forbidden, token=token)
        assert refused.status_code == 400, forbidden
    stored = stack.db.users.find_one({"email": "profile@example.com"})
    assert stored["roles"] == ["user"] and stored["plan"] == "free"


def test_users_me_needs_a_valid_token(stack):
    assert stack.get("/users/me").status_code == 401
    bad = stack.get("/users/me", token="not.a.jwt")
    assert bad.status_code == 401 and bad.json()["reason"] == "invalid_token"


def test_a_user_reads_themself_but_not_others(stack):
    ann = stack.sign_up("reader-ann@example.com")
    bob = stack.sign_up("reader-bob@example.com")
    token = stack.sign_in("reader-ann@example.com")["access_token"]
    assert stack.get(f"/users/{ann['id']}", token=token).json()["email"] == "reader-ann@example.com"
    assert stack.get(f"/users/{bob['id']}", token=token).status_code == 403
    assert stack.get(f"/users/{bob['id']}", token=stack.admin_token()).status_code == 200
    assert stack.get("/users/u_nobody", token=stack.admin_token()).status_code == 404


def test_mail_links_use_the_public_base_url_not_the_host_header(stack):
    stack.sign_up("host@example.com")
    response = stack.post("/auth/login", {"email": "host@example.com"}, headers={"Host": "evil.example"})
    assert response.status_code == 202
    text = stack.mail.wait_for("host@example.com")[-1].get_body(("plain",)).get_content()
    assert PUBLIC_BASE_URL + "/api/v1/auth/magic?token=" in text and "evil.example" not in text


def test_user_count_and_active_sessions_are_gauges(stack):
    stack.sign_up("gauge@example.com")
    stack.sign_in("gauge@example.com")
    metrics = requests.get(stack.url + "/metrics", timeout=10).text
    values = {
        line.split()[0]: float(line.split()[1])
        for line in metrics.splitlines()
        if line.startswith(("lucid_users ", "lucid_active_sessions "))
    }
    assert values["lucid_users"] == stack.db.users.count_documents({})
    assert values["lucid_active_sessions"] >= 1
    assert values["lucid_active_sessions"] == stack.db.sessions.count_documents({"revoked_at": None})
