"""Stage 4, the registry: versions appear whole, aliases move with a ledger entry, artifacts are verified."""

from __future__ import annotations

import pytest

from loopml.registry.registry import CHAMPION, IntegrityError, Registry, RegistryError, sha256
from loopml.serving.server import load_predictor
from loopml.storage import MemoryStore
from loopml.storage.layout import version_dir


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
def registry(store) -> Registry:
    return Registry(store)


def _register(registry: Registry, tag: str = "x") -> int:
    return registry.register({"model.joblib": f"model-{tag}".encode()}, {"name": "t", "tag": tag}).number


@pytest.fixture
def three(registry) -> Registry:
    for tag in "abc":
        _register(registry, tag)
    return registry


def test_version_numbers_increase(registry):
    assert [_register(registry, t) for t in "abc"] == [1, 2, 3]
    assert registry.versions() == [1, 2, 3]
    v2 = registry.get(2)
    assert v2.meta["tag"] == "b" and v2.meta["version"] == 2
    info = v2.meta["artifacts"]["model.joblib"]
    assert info == {"key": f"{version_dir(2)}/model.joblib", "sha256": sha256(b"model-b"), "bytes": 7}
    assert registry.artifact(v2, "model.joblib") == b"model-b"


def test_register_needs_an_artifact(registry):
    with pytest.raises(RegistryError):
        registry.register({}, {})
    assert registry.versions() == []


def test_a_crashed_registration_is_invisible_and_its_number_is_skipped(registry, store):
    assert _register(registry, "a") == 1
    # a writer that crashed after claiming 2 and writing its artifact, before version.json
    assert store.put_new(f"{version_dir(2)}/claim.json", b"{}")
    store.put(f"{version_dir(2)}/model.joblib", b"half a model")
    assert registry.versions() == [1]
    with pytest.raises(RegistryError, match="no version 2"):
        registry.get(2)
    with pytest.raises(RegistryError):
        registry.promote(2, why="should not be possible")
    assert _register(registry, "c") == 3
    assert registry.versions() == [1, 3]


def test_a_version_is_visible_only_once_version_json_is_written(registry, store):
    """Observe the store at the moment each artifact is written: no version is listed yet."""
    seen: list[list[int]] = []

    class Watching(MemoryStore):
        def put(self, key, data):
            if "/versions/" in key and not key.endswith("version.json"):
                seen.append(Registry(self).versions())
            super().put(key, data)

    reg = Registry(Watching())
    reg.register({"model.onnx": b"1", "model.joblib": b"2"}, {"name": "t"})
    assert seen == [[], []]
    assert reg.versions() == [1]


def test_promote_moves_the_alias_and_writes_the_ledger(three, monkeypatch):
    monkeypatch.setenv("LOOPML_USER", "alice")
    assert three.alias(CHAMPION) is None
    three.promote(1, why="first model")
    three.promote(2, why="better auc", who="bob")
    assert three.alias(CHAMPION) == 2
    assert three.resolve().number == 2
    ledger = three.ledger(CHAMPION)
    assert [(e["from"], e["to"], e["who"], e["why"], e["action"]) for e in ledger] == [
        (None, 1, "alice", "first model", "promote"),
        (1, 2, "bob", "better auc", "promote"),
    ]
    assert all(e["when"] and e["alias"] == CHAMPION for e in ledger)


def test_promoting_the_champion_again_is_refused(three):
    three.promote(1, why="x")
    with pytest.raises(RegistryError, match="already the champion"):
        three.promote(1, why="again")
    assert len(three.ledger()) == 1


def test_promote_to_a_missing_version_is_refused_and_the_ledger_unchanged(three):
    three.promote(1, why="x")
    before = three.ledger()
    with pytest.raises(RegistryError, match="no version 9"):
        three.promote(9, why="typo")
    assert three.ledger() == before
    assert three.alias(CHAMPION) == 1


def test_rollback_walks_back_through_the_champion_stack(three):
    for n in (1, 2, 3):
        three.promote(n, why=f"v{n}")
    assert list(three.read_alias(CHAMPION).history) == [1, 2, 3]
    entry = three.rollback(why="v3 regressed")
    assert (entry["from"], entry["to"], entry["action"]) == (3, 2, "rollback")
    assert three.alias(CHAMPION) == 2
    three.rollback(why="v2 too")
    assert three.alias(CHAMPION) == 1
    with pytest.raises(RegistryError, match="nothing to roll back to"):
        three.rollback(why="no further")
    assert three.alias(CHAMPION) == 1
    assert [e["action"] for e in three.ledger(CHAMPION)] == ["promote"] * 3 + ["rollback"] * 2


def test_rollback_then_promote_keeps_stack_semantics(three):
    three.promote(1, why="a")
    three.promote(2, why="b")
    three.rollback(why="b bad")
    three.promote(3, why="c")
    assert list(three.read_alias(CHAMPION).history) == [1, 3]
    three.rollback(why="c bad")
    assert three.alias(CHAMPION) == 1


def test_rollback_to_a_named_version(three):
    for n in (1, 2, 3):
        three.promote(n, why=f"v{n}")
    entry = three.rollback(why="straight back to 1", to=1)
    assert (entry["from"], entry["to"]) == (3, 1)
    assert three.alias(CHAMPION) == 1
    with pytest.raises(RegistryError, match="already the champion"):
        three.rollback(why="x", to=1)
    with pytest.raises(RegistryError, match="no version 42"):
        three.rollback(why="x", to=42)
    assert three.alias(CHAMPION) == 1


def test_rollback_without_a_champion(three):
    with pytest.raises(RegistryError, match="no champion"):
        three.rollback(why="x")
    assert three.ledger() == []


def test_other_aliases_do_not_touch_the_champion(three):
    three.promote(1, why="x")
    three.set_alias("challenger", 2, why="shadow it")
    assert three.alias("challenger") == 2 and three.alias(CHAMPION) == 1
    three.set_alias("challenger", None, why="done")
    assert three.alias("challenger") is None
    assert list(three.read_alias(CHAMPION).history) == [1]
    assert [e["to"] for e in three.ledger("challenger")] == [2, None]


def test_tampered_artifact_raises_integrity_error(three, store):
    v = three.get(2)
    store.put(v.meta["artifacts"]["model.joblib"]["key"], b"model-B")
    with pytest.raises(IntegrityError, match="SHA-256"):
        three.artifact(v, "model.joblib")
    with pytest.raises(RegistryError, match="no artifact"):
        three.artifact(v, "model.onnx")


def test_tampered_onnx_of_a_real_model_is_refused_on_load(linear_trained):
    store = MemoryStore()
    number = linear_trained.register(store)
    reg = Registry(store)
    version = reg.get(number)
    assert version.has_onnx
    assert load_predictor(reg, version).kind == "onnx"
    key = version.meta["artifacts"]["model.onnx"]["key"]
    data = bytearray(store.get(key))
    data[len(data) // 2] ^= 0xFF  # one flipped byte
    store.put(key, bytes(data))
    with pytest.raises(IntegrityError):
        load_predictor(reg, version)


def test_registered_real_model_carries_lineage_and_reference(trained):
    store = MemoryStore()
    number = trained.register(store)
    reg = Registry(store)
    meta = reg.get(number).meta
    assert meta["lineage"]["metaflow_run"].startswith("TrainFlow/")
    assert meta["lineage"]["spec_sha256"] == trained.spec.fingerprint()
    assert meta["data"]["fingerprint"] == trained.data.fingerprint
    assert meta["gates"]["passes"] is True
    record = reg.get(number).record  # the same, typed
    assert record.lineage.metaflow_run == meta["lineage"]["metaflow_run"]
    assert record.gates.passes is True and record.data.fingerprint == trained.data.fingerprint
    assert record.version == number and record.has_onnx and record.model_schema == meta["schema"]
    assert set(record.fingerprint) == set(meta["artifacts"])
    assert reg.alias(CHAMPION) == number
    ref = reg.reference(reg.get(number))
    assert len(ref) == len(trained.splits.test)
    assert {"y_pred", "y_pred_proba", "repaid", "timestamp"} <= set(ref.columns)


# registering once per run ------------------------------------------------------------------
class FakeClock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now, self.slept = now, 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        self.slept += seconds


def test_a_retried_run_gets_its_first_version_back(registry):
    run = "TrainFlow/1700000000000000"
    first = registry.register({"model.joblib": b"a"}, {"name": "t"}, run_key=run)
    again = registry.register({"model.joblib": b"a-retry"}, {"name": "t"}, run_key=run)
    assert again.number == first.number == 1
    assert registry.versions() == [1]
    assert registry.get(1).meta["run_key"] == run
    assert registry.register({"model.joblib": b"b"}, {"name": "t"}, run_key="TrainFlow/2").number == 2


def test_concurrent_attempts_of_one_run_register_one_version(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    from loopml.storage import LocalStore

    reg = Registry(LocalStore(tmp_path))
    with ThreadPoolExecutor(4) as pool:
        numbers = set(pool.map(lambda i: reg.register({"model.joblib": f"m{i}".encode()}, {"name": "t"},
                                                      run_key="TrainFlow/9").number, range(4)))
    assert len(numbers) == 1 and reg.versions() == sorted(numbers)


def test_a_crashed_attempt_does_not_block_the_retry_for_longer_than_the_grace(store):
    from loopml.storage.base import encode_json
    from loopml.storage.layout import run_key_path

    clock = FakeClock()
    # the first attempt claimed number 1 for the run and died before version.json
    store.put_new(f"{version_dir(1)}/claim.json", b"{}")
    store.put_new(run_key_path("TrainFlow/5"), encode_json({"run_key": "TrainFlow/5", "version": 1, "owner": "dead",
                                                             "claimed_at": "2023-11-14T22:13:20+00:00"}))
    reg = Registry(store, claim_grace=60, clock=clock, sleep=clock.sleep)
    v = reg.register({"model.joblib": b"m"}, {"name": "t"}, run_key="TrainFlow/5")
    assert 0 < clock.slept <= 60  # it waited for the claim's writer, then took over
    assert (v.number, reg.versions()) == (2, [2])
    assert reg.register({"model.joblib": b"m"}, {"name": "t"}, run_key="TrainFlow/5").number == 2


def test_a_corrupt_run_claim_is_taken_over(store):
    from loopml.storage.layout import run_key_path

    store.put(run_key_path("TrainFlow/6"), b"{half")
    reg = Registry(store, claim_grace=60)
    assert reg.register({"model.joblib": b"m"}, {"name": "t"}, run_key="TrainFlow/6").number == 1


def test_a_writer_whose_claim_was_taken_over_yields_to_the_new_one():
    clock = FakeClock()

    class Stalling(MemoryStore):
        """Runs ``during`` once, when the first artifact is written: the first writer stalls there."""
        during = None

        def put(self, key, data):
            if self.during and key.endswith("model.joblib"):
                during, self.during = self.during, None
                during()
            super().put(key, data)

    store = Stalling()
    taken: list[int] = []

    def retry_takes_over() -> None:
        clock.now += 61  # the stalled writer's claim is now stale
        taken.append(Registry(store, claim_grace=60, clock=clock).register(
            {"model.joblib": b"retry"}, {"name": "t"}, run_key="TrainFlow/7").number)

    store.during = retry_takes_over
    late = Registry(store, claim_grace=60, clock=clock).register({"model.joblib": b"late"}, {"name": "t"},
                                                                 run_key="TrainFlow/7")
    assert taken == [2] and late.number == 2
    reg = Registry(store)
    assert reg.versions() == [2]
    assert reg.artifact(reg.get(2), "model.joblib") == b"retry"
    assert store.exists(f"{version_dir(1)}/claim.json")  # the abandoned number: doctor's to clean


# alias moves: compare-and-swap, history, refusals ---------------------------------------------
def test_rollback_to_then_a_plain_rollback_never_moves_forward(registry):
    for t in "abcd":
        _register(registry, t)
    for n in (1, 2, 3, 4):
        registry.promote(n, why=f"v{n}")
    registry.rollback(why="all bad since 1", to=1)
    assert list(registry.read_alias(CHAMPION).history) == [1]
    with pytest.raises(RegistryError, match="nothing to roll back to"):
        registry.rollback(why="again")
    assert registry.alias(CHAMPION) == 1


def test_rollback_to_a_version_never_champion_replaces_the_bad_one(registry):
    for t in "abcd":
        _register(registry, t)
    for n in (1, 3):
        registry.promote(n, why=f"v{n}")
    registry.rollback(why="3 is bad, 2 is fine", to=2)
    assert list(registry.read_alias(CHAMPION).history) == [1, 2]
    registry.rollback(why="2 too")
    assert registry.alias(CHAMPION) == 1  # back, never forward to 3


class _Barrier(MemoryStore):
    """Once armed, the first two reads of the champion alias wait for each other: both writers read
    it before either writes, the race a compare-and-swap must settle."""

    def __init__(self) -> None:
        import threading

        super().__init__()
        self.barrier = threading.Barrier(2, timeout=10)
        self.waiting = 0
        self.count = threading.Lock()

    def get_versioned(self, key):
        got = super().get_versioned(key)
        if key.endswith("aliases/champion.json"):
            with self.count:
                wait, self.waiting = self.waiting > 0, max(self.waiting - 1, 0)
            if wait:
                self.barrier.wait()
        return got


def test_two_concurrent_promotes_exactly_one_wins():
    from concurrent.futures import ThreadPoolExecutor

    from loopml.registry.registry import ConcurrentMove

    store = _Barrier()
    reg = Registry(store)
    for t in "abc":
        _register(reg, t)
    reg.promote(1, why="first")
    store.waiting = 2

    def promote(n: int) -> str:
        try:
            return f"won {reg.promote(n, why=f'v{n}')['to']}"
        except ConcurrentMove as err:
            return f"lost: {err}"

    with ThreadPoolExecutor(2) as pool:
        outcomes = list(pool.map(promote, (2, 3)))
    won = [o for o in outcomes if o.startswith("won")]
    assert len(won) == 1, outcomes
    lost = next(o for o in outcomes if o.startswith("lost"))
    assert "was moved while this command ran" in lost and "nothing was changed" in lost
    winner = int(won[0].split()[1])
    assert reg.alias(CHAMPION) == winner
    assert [(e["from"], e["to"]) for e in reg.ledger(CHAMPION)] == [(None, 1), (1, winner)]


def test_promote_refuses_a_tampered_version_unless_forced(three, store):
    three.promote(1, why="first")
    key = three.get(2).meta["artifacts"]["model.joblib"]["key"]
    store.put(key, b"tampered")
    with pytest.raises(RegistryError, match=r"does not match its recorded SHA-256.*loopml promote 2 --force"):
        three.promote(2, why="x")
    assert three.alias(CHAMPION) == 1 and len(three.ledger()) == 1
    entry = three.promote(2, why="incident: the hash record is wrong", force=True)
    assert entry["forced"] is True and "SHA-256" in entry["overrode"][0]
    assert three.ledger()[-1]["forced"] is True


def test_a_version_that_failed_its_gates_needs_force(registry):
    ok = registry.register({"model.joblib": b"ok"}, {"gates": {"passes": True, "reasons": []}}).number
    bad = registry.register({"model.joblib": b"bad"},
                            {"gates": {"passes": False, "reasons": ["test roc_auc 0.61 misses the threshold"]}}).number
    with pytest.raises(RegistryError, match=r"failed its gates \(test roc_auc 0.61.*--force"):
        registry.promote(bad, why="manual")
    registry.promote(ok, why="fine")
    registry.promote(bad, why="I know", force=True)
    registry.rollback(why="back", to=ok)
    with pytest.raises(RegistryError, match=f"loopml rollback --to {bad} --force"):
        registry.rollback(why="forward again", to=bad)
    assert registry.alias(CHAMPION) == ok
    assert [e["forced"] for e in registry.ledger(CHAMPION)] == [False, True, False]


def test_promoting_the_challenger_clears_the_challenger_alias(three):
    from loopml.registry.registry import CHALLENGER

    three.promote(1, why="first")
    three.set_alias(CHALLENGER, 2, why="shadow", action="challenger")
    three.promote(2, why="won its match")
    assert three.alias(CHALLENGER) is None
    assert [(e["to"], e["action"]) for e in three.ledger(CHALLENGER)] == [(2, "challenger"), (None, "clear")]
    three.set_alias(CHALLENGER, 3, why="next one", action="challenger")
    three.promote(1, why="unrelated")  # another version: the challenger stays
    assert three.alias(CHALLENGER) == 3


@pytest.mark.parametrize("garbage", [b"{not json", b"[]", b'{"version": "two"}', b""])
def test_a_corrupt_alias_never_blocks_promote_or_rollback(three, store, garbage):
    three.promote(1, why="a")
    three.promote(2, why="b")
    store.put("registry/aliases/champion.json", garbage)
    assert three.alias(CHAMPION) == 2  # the ledger's account
    three.promote(3, why="c")
    assert list(three.read_alias(CHAMPION).history) == [1, 2, 3]
    three.rollback(why="c bad")
    assert three.alias(CHAMPION) == 2
    assert [e["to"] for e in three.ledger(CHAMPION)] == [1, 2, 3, 2]


def test_a_kill_between_the_alias_and_its_ledger_entry_loses_nothing(three):
    """The alias moved; the process died before the ledger entry: the entry is in the alias, every
    read of the ledger shows it, and the next move writes it down."""

    class DiesBeforeLedger(MemoryStore):
        def put_new(self, key, data):
            if "/ledger/" in key:
                raise KeyboardInterrupt("killed")
            return super().put_new(key, data)

    store = DiesBeforeLedger()
    store.objects = dict(three.store.objects)
    reg = Registry(store)
    with pytest.raises(KeyboardInterrupt):
        reg.promote(1, why="a")
    assert reg.alias(CHAMPION) == 1
    assert [e["to"] for e in reg.ledger(CHAMPION)] == [1]
    healthy = Registry(MemoryStore())
    healthy.store.objects = store.objects  # same objects, a store that no longer dies
    healthy.promote(2, why="b")
    assert [k.split("/")[-1] for k in healthy.store.list("registry/ledger/")] == ["00000001.json", "00000002.json"]
    healthy.rollback(why="b bad")
    assert healthy.alias(CHAMPION) == 1


def test_json_errors_name_the_file(three, store):
    from loopml.storage import CorruptObject

    three.promote(1, why="a")
    store.put(f"{version_dir(2)}/version.json", b"{broken")
    with pytest.raises(CorruptObject, match="registry/versions/0002/version.json is not valid JSON"):
        three.get(2)
    key = store.list("registry/ledger/")[0]
    store.put(key, b"NaN]")
    with pytest.raises(CorruptObject, match=f"{key} is not valid JSON"):
        three.ledger()


# the typed version record ------------------------------------------------------------------------
def test_the_record_keeps_what_it_does_not_type(registry):
    v = registry.register({"model.joblib": b"m"}, {"name": "t", "tag": "custom", "schema": {"features": []}})
    record = registry.get(v.number).record
    assert record.name == "t" and record.model_schema == {"features": []} and record.gates is None
    dumped = record.model_dump(mode="json", by_alias=True)
    assert dumped["tag"] == "custom" and dumped["schema"] == {"features": []}
    assert dumped["artifacts"]["model.joblib"]["sha256"] == sha256(b"m")


@pytest.mark.parametrize(("broken", "named"), [
    ({"version": 1, "created_at": "2026-01-01T00:00:00+00:00"}, "artifacts: Field required"),
    ({"version": 1, "created_at": "yesterday", "artifacts": {"m": {"key": "k", "sha256": "0" * 64, "bytes": 1}}},
     "created_at"),
    ({"version": 1, "created_at": "2026-01-01T00:00:00+00:00",
      "artifacts": {"m": {"key": "k", "sha256": "0" * 64, "bytes": 1}}, "gates": {"passes": "perhaps"}}, "gates.passes"),
])
def test_a_version_json_that_is_not_a_record_names_the_file_and_the_field(registry, store, broken, named):
    from loopml.storage import CorruptObject

    store.put_json(f"{version_dir(1)}/version.json", broken)
    with pytest.raises(CorruptObject, match=rf"registry/versions/0001/version.json is not a valid version record \({named}"):
        registry.get(1)
