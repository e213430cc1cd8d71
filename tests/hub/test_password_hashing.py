"""Local account passwords: bcrypt at the configured cost, checked without stalling the hub,
and moved to a new cost at their owner's next sign-in. The authenticator runs against a real
SQLite database (JupyterHub's and NativeAuthenticator's tables)."""

from __future__ import annotations

import pytest
from jupyterhub import orm
from nativeauthenticator.orm import UserInfo
from traitlets import TraitError

from hub.auth import WorkbenchAuthenticator, hash_cost, hash_password, set_password
from hub.settings import WorkbenchSettings
from tests.platform import loop_ticks_during


@pytest.fixture
def db(tmp_path):
    session = orm.new_session_factory(f"sqlite:///{tmp_path / 'hub.sqlite'}")()
    yield session
    session.close()


def authenticator(db, rounds: int) -> WorkbenchAuthenticator:
    return WorkbenchAuthenticator(
        db=db,
        admin_users={"admin"},
        initial_admin_password="admin-password",
        password_hash_rounds=rounds,
        allowed_failed_logins=3,
    )


def stored_hash(db, name: str) -> bytes:
    db.expire_all()
    return UserInfo.find(db, name).password


async def sign_in(auth, name: str, password: str):
    return await auth.authenticate(None, {"username": name, "password": password})


async def test_the_first_admin_is_hashed_at_the_configured_cost(db):
    auth = authenticator(db, 5)
    assert hash_cost(stored_hash(db, "admin")) == 5
    assert await sign_in(auth, "admin", "admin-password") == "admin"
    assert await sign_in(auth, "admin", "wrong-password") is None


async def test_a_stored_hash_of_another_cost_moves_at_the_next_sign_in(db):
    auth = authenticator(db, 4)
    set_password(db, "ada", "old-cost-password", rounds=6)
    before = stored_hash(db, "ada")
    assert hash_cost(before) == 6
    # a wrong password changes nothing
    assert await sign_in(auth, "ada", "not-her-password") is None
    assert stored_hash(db, "ada") == before
    # the right one signs in and leaves a hash of cost 4 that still takes the password
    assert await sign_in(auth, "ada", "old-cost-password") == "ada"
    after = stored_hash(db, "ada")
    assert hash_cost(after) == 4
    assert await sign_in(auth, "ada", "old-cost-password") == "ada"
    assert stored_hash(db, "ada") == after  # already at the cost: not hashed again


async def test_an_unapproved_or_blocked_account_does_not_sign_in(db):
    auth = authenticator(db, 4)
    set_password(db, "bob", "bobs-password", rounds=4)
    info = UserInfo.find(db, "bob")
    info.is_authorized = False
    db.commit()
    assert await sign_in(auth, "bob", "bobs-password") is None
    info.is_authorized = True
    db.commit()
    for _ in range(3):
        assert await sign_in(auth, "bob", "wrong") is None
    # three failures block the account for a while, even with the right password
    assert await sign_in(auth, "bob", "bobs-password") is None


async def test_a_sign_in_leaves_the_event_loop_free_while_bcrypt_works(db):
    """A hash at cost 13 takes about half a second of CPU; the hub must keep answering meanwhile.
    A ticker counts how often the loop ran it during the sign-in: a check on the loop itself
    would leave it at one or two ticks."""
    auth = authenticator(db, 4)
    db.add(UserInfo(username="slow", password=hash_password("slow-password", 13)))
    UserInfo.find(db, "slow").is_authorized = True
    db.commit()
    signed_in, took, ticks = await loop_ticks_during(sign_in(auth, "slow", "slow-password"))
    assert signed_in == "slow"
    # the loop ran the ticker throughout: at least a tick per 100 ms of the sign-in
    assert ticks >= took / 0.1, (ticks, took)
    assert hash_cost(stored_hash(db, "slow")) == 4


def test_the_setting_refuses_a_cost_bcrypt_does_not_take():
    for rounds in (3, 32):
        with pytest.raises(TraitError):
            WorkbenchSettings(password_hash_rounds=rounds)
    assert WorkbenchSettings().password_hash_rounds == 12
