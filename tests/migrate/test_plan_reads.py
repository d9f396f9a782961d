"""A plan's large reads come packed into one value by the server (Cloud.packed_rows): the
rows must be the ones a plain read gives, and the plan the same when packing is refused."""

from __future__ import annotations

import contextlib
import datetime

from pacestack.migrate import cloud as cloudmod
from pacestack.migrate import plan as planmod

VOLUMES = ({"id": "id", "host": "host", "cluster_name": "cluster_name",
            "service_uuid": "service_uuid", "size": "size"},
           "FROM {cinder.volumes} WHERE deleted = 0", "id")
PLAIN = "SELECT id, host, cluster_name, service_uuid, size FROM {cinder.volumes} " \
        "WHERE deleted = 0 ORDER BY id"


def _set(c, sql: str, args: list) -> None:
    with c.conn.cursor() as cur:
        cur.execute(c.sql(sql), args)


def test_packed_rows_are_the_plain_rows(seeded, monkeypatch):
    """NULL, empty text and integers come back as a plain read gives them; a value holding
    a separator sends the read back to rows."""
    with contextlib.closing(seeded.cloud()) as c:
        ids = [r["id"] for r in c.rows(PLAIN)]
        assert len(ids) >= 3
        _set(c, "UPDATE {cinder.volumes} SET cluster_name = '' WHERE id = %s", [ids[0]])
        _set(c, "UPDATE {cinder.volumes} SET host = NULL WHERE id = %s", [ids[1]])
        _set(c, "UPDATE {cinder.volumes} SET host = 'n' WHERE id = %s", [ids[2]])
        plain = c.rows(PLAIN)
        with monkeypatch.context() as m:
            m.setattr(c, "rows", None)  # unpacked, the read would fail
            packed = c.packed_rows(*VOLUMES, ints=frozenset({"size"}))
        assert packed == plain
        assert [r["cluster_name"] for r in packed[:1]] == [""] and packed[1]["host"] is None
        assert packed[2]["host"] == "n"
        assert all(type(r["size"]) is int for r in packed)
        # separators inside a value: not split, read row by row
        _set(c, "UPDATE {cinder.volumes} SET host = %s WHERE id = %s",
             ["a\x1fb\x1ec", ids[0]])
        assert c.packed_rows(*VOLUMES, ints=frozenset({"size"})) == c.rows(PLAIN)
        c.conn.rollback()


def _content(plan) -> dict:
    def plain(v):
        return "<now>" if isinstance(v, datetime.datetime) else v

    return {"changes": [{k: ({c: plain(x) for c, x in v.items()} if isinstance(v, dict) else v)
                         for k, v in ch.to_dict().items()} for ch in plan.changes],
            "refusals": [str(f) for f in plan.refusals],
            "notes": [str(f) for s in plan.steps for f in s.notes],
            "accounting": plan.accounting.to_dict()}


def test_plan_same_when_reads_do_not_pack(seeded, monkeypatch):
    """A packed value too large for the ceiling: the plan reads row by row, same plan."""
    with contextlib.closing(seeded.cloud()) as c:
        packed = _content(planmod.build(c, seeded.mapping()))
        c.conn.commit()
        monkeypatch.setattr(cloudmod, "PACKED_MAX", 16)
        rows = _content(planmod.build(c, seeded.mapping()))
    assert rows == packed
    assert any(ch["table"] == "neutron.ml2_port_binding_levels" for ch in packed["changes"])
    assert any(ch["table"] == "cinder.volumes" for ch in packed["changes"])


def test_a_packed_value_cut_by_the_server_is_never_read_as_rows(seeded):
    """GROUP_CONCAT cuts at group_concat_max_len with only a warning: wherever the cut
    falls (inside the last row's NULL flags too, where every row still has its fields),
    the read goes back to rows and returns the plain read."""
    with contextlib.closing(seeded.cloud()) as c:
        ids = [r["id"] for r in c.rows(PLAIN)]
        _set(c, "UPDATE {cinder.volumes} SET host = NULL WHERE id = %s", [ids[-1]])
        plain = c.rows(PLAIN)
        whole = len("\x1e".join("\x1f".join(["" if v is None else str(v) for v in r.values()]
                                            + ["".join("1" if v is None else "0"
                                                       for v in r.values()), "."])
                                for r in plain))
        c._packing = True  # the session's ceiling is the test's to set
        for cut in range(1, 12):
            _set(c, "SET SESSION group_concat_max_len = %s", [whole - cut])
            assert c.packed_rows(*VOLUMES, ints=frozenset({"size"})) == plain, cut
        c.conn.rollback()


CACHES = "SELECT c.id, c.instance_uuid, c.network_info FROM {nova.instance_info_caches} c " \
    "JOIN {nova.instances} i ON i.uuid = c.instance_uuid WHERE c.deleted = 0 AND " \
    "i.deleted = 0 ORDER BY c.id"


def test_info_caches_read_packed_in_chunks_are_the_plain_rows(seeded, monkeypatch):
    """The info caches come packed in id ranges: whatever the range size, the rows of a
    plain read (NULL, empty, unicode, JSON escapes, a separator inside a value)."""
    from pacestack.migrate import nova

    with contextlib.closing(seeded.cloud()) as c:
        ids = [r["id"] for r in c.rows(CACHES)]
        assert len(ids) >= 2
        tricky = [None, "", '[{"id": "p\\u00e9", "network": {"label": "r\\u00e9seau \\"x\\"'
                  '\\\\n"}}]', '[{"id": "ünïcode ☃", "type": "bridge"}]',
                  '[{"id": "a\x1fb\x1ec"}]', c.rows(CACHES)[0]["network_info"]]
        for pair in zip(tricky, tricky[1:], strict=False):
            for i, v in zip(ids, pair, strict=False):
                _set(c, "UPDATE {nova.instance_info_caches} SET network_info = %s "
                     "WHERE id = %s", [v, i])
            plain = c.rows(CACHES)
            for chunk in (1, 200, nova.PACKED_CHUNK):
                monkeypatch.setattr(nova, "PACKED_CHUNK", chunk)
                assert list(nova._info_caches(c, "nova")) == plain
            if not any(isinstance(v, str) and ("\x1f" in v or "\x1e" in v) for v in pair):
                with monkeypatch.context() as m:
                    m.setattr(c, "rows", None)  # every chunk packed
                    assert list(nova._info_caches(c, "nova")) == plain
        c.conn.rollback()


def test_info_cache_encoding_is_json_dumps():
    """The plan's new network_info is json.dumps' text (what nova's jsonutils writes)."""
    import json

    from pacestack.migrate import nova

    values = [[], [{"id": "é☃\u2028", "q": 'a "b" \\ c\n\t\x00\x1f', "n": None, "f": 1.5,
                    "big": 10**20, "t": True, "nested": {"l": [1, {"x": []}], "e": {}}}],
              [{"k": "\ud83d\ude00 emoji"}, 3, "s"]]
    for v in values:
        assert nova._dumps(v) == json.dumps(v)
