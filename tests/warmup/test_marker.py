"""The marker: ours verifies, a forged, copied or foreign one does not; a master-key rotation keeps the
marker of mail in flight valid."""

from __future__ import annotations

from nimbus_api.kit.crypto import MasterKeyring, generate_master_key
from nimbus_api.warmup.marker import Marker

MID = "abc123@alpha.example.test"


def test_our_marker_verifies_and_nothing_else_does() -> None:
    keyring = MasterKeyring.from_strings([generate_master_key()])
    marker = Marker.from_keyring(keyring)
    value = marker.sign(MID)
    assert value.startswith("v1.")
    assert marker.verify(value, MID)
    assert marker.verify(value, f"<{MID}>")  # with or without the brackets
    assert not marker.verify(value, "other@alpha.example.test")  # copied onto another message
    assert not marker.verify("v1." + "A" * 24, MID)  # made up
    assert not marker.verify(value.replace("v1.", "v2."), MID)
    assert not marker.verify(value[:-2], MID)
    assert not marker.verify("", MID) and not marker.verify(value, "") and not marker.verify(None, None)
    foreign = Marker.from_keyring(MasterKeyring.from_strings([generate_master_key()]))
    assert not foreign.verify(value, MID)  # another deployment's key
    assert not marker.verify(foreign.sign(MID), MID)


def test_a_rotated_master_key_still_verifies() -> None:
    old, new = generate_master_key(), generate_master_key()
    before = Marker.from_keyring(MasterKeyring.from_strings([old]))
    after = Marker.from_keyring(MasterKeyring.from_strings([new, old]))
    assert after.verify(before.sign(MID), MID)
    assert after.sign(MID) != before.sign(MID)
