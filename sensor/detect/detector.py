"""The detect stage: record -> host features -> rules -> suppressed alerts, all in packet time."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Final

from sensor.config import Config
from sensor.detect.alerts import Suppressor, make_alert
from sensor.detect.gates import GATES, CompiledGate, compile_gate
from sensor.detect.rules import RULES, TRIGGERS, Rule
from sensor.features.hosts import HostState, HostTable
from sensor.features.schema import change_mask
from sensor.records import Alert, ConnRecord, HostFeatures, SmtpSession

if TYPE_CHECKING:
    from sensor.detect.scoring import ModelStage, Scorer

_Gated = tuple[tuple[CompiledGate, tuple[Rule, str]], ...]
MAX_MASKS: Final = 4096  # distinct change masks whose triggered rules are remembered


@dataclass(slots=True)
class DetectorStats:
    """What the features and detect stages counted, for the closing summary."""

    records: int = 0
    hosts: int = 0
    hosts_active: int = 0
    evicted: int = 0
    events_dropped: int = 0
    users_evicted: int = 0
    hosts_expired: int = 0  # idle for bounds.host_idle_s of packet time
    loss_failed_conns: int = 0  # failed connections that showed capture loss: not in the
    # model's view of the failure counts (the rules count them)
    unattributed_conns: int = 0  # connection records without payload, SYN, SYN-ACK or RST:
    # in no feature (sensor.features.extract.unattributable)
    alerts: int = 0
    updates: int = 0
    suppressed: int = 0
    alerts_by_kind: dict[str, int] = field(default_factory=dict)
    model: str = ""  # the model that scored host windows ("" when none did)
    model_scored: int = 0  # host windows scored
    model_batches: int = 0
    model_early_batches: int = 0  # taken before score_interval_s: max_hosts hosts had changed
    model_alerts: int = 0  # anomalous_host alerts and "both" updates
    model_waits: int = 0  # times the packet loop waited for the model's process: more than
    # [model] max_pending_rows rows were unanswered


class Detector:
    """Feed it ConnRecords and SmtpSessions as they close; it calls `emit` with each Alert."""

    def __init__(self, config: Config, emit: Callable[[Alert], None],
                 scorer: Scorer | None = None, model_name: str = "") -> None:
        self.config = config
        self.table = HostTable(config)
        self._emit = emit
        self._rules: list[tuple[Rule, str]] = []
        self._masks: list[int] = []
        self._gated: list[tuple[int, CompiledGate, tuple[Rule, str]]] = []
        self._any_mask = 0
        # (change mask, roles) -> the triggered rules whose gate admits those roles (few of them)
        self._triggered: dict[tuple[int, bool, bool], _Gated] = {}
        self._compile_rules(config)
        self._suppress = Suppressor(config.suppression, config.bounds.max_hosts)
        self._alerts_by_kind: dict[str, int] = {}
        self._alerts = 0
        self.model_name = model_name
        self.stage: ModelStage | None = None
        self._out: Callable[[Alert], None] = self._count_emit
        if scorer is not None:
            from sensor.detect.scoring import ModelStage

            self.stage = ModelStage(config, scorer, self._count_emit, self._suppress)
            self._out = self.stage.out

    def _compile_rules(self, config: Config) -> None:
        """The enabled rules of `config`, their trigger masks and gates."""
        self._rules = [(fn, name) for name, fn in RULES.items() if config.rules[name].enabled]
        self._masks = [change_mask(TRIGGERS[name]) for _, name in self._rules]
        self._gated = [(m, compile_gate(GATES[name], config.rules[name]), (fn, name))
                       for m, (fn, name) in zip(self._masks, self._rules, strict=True)]
        self._any_mask = 0
        for m in self._masks:
            self._any_mask |= m
        self._triggered = {}

    def reconfigure(self, config: Config) -> None:
        """Take the rules (switches, severities, thresholds) and the suppression settings of
        `config` (SIGHUP); every host's windows and the open alert episodes are kept, so the
        new thresholds apply from the next record on."""
        self.config = replace(self.config, rules=config.rules, suppression=config.suppression)
        self._compile_rules(self.config)
        self._suppress.reconfigure(config.suppression)
        if self.stage is not None:  # its episodes follow the suppression interval
            self.stage.config = replace(self.stage.config, suppression=config.suppression)

    def _count_emit(self, alert: Alert) -> None:
        self._alerts += 1
        self._alerts_by_kind[alert.kind] = self._alerts_by_kind.get(alert.kind, 0) + 1
        self._emit(alert)

    def on_conn(self, rec: ConnRecord) -> None:
        """One closed TCP connection."""
        stage = self.stage
        if stage is not None:
            stage.settle(rec.client_ip)  # before the table changes the host (see ModelStage)
        for st, mask in self.table.on_conn(rec):
            self._evaluate(st, mask)
            if stage is not None:
                stage.touch(st, st.now)

    def on_session(self, s: SmtpSession) -> None:
        """One closed SMTP session."""
        stage = self.stage
        if stage is not None:
            stage.settle(s.client_ip)
            stage.settle(s.server_ip)
        for st, mask in self.table.on_session(s):
            self._evaluate(st, mask)
            if stage is not None:
                stage.touch(st, st.now)

    def evaluate(self, f: HostFeatures) -> list[Alert]:
        """Run every enabled rule on one snapshot; returns (and emits) the alerts it allows."""
        return self._run(f, self._rules)

    def _run(self, f: HostFeatures, rules: list[tuple[Rule, str]]) -> list[Alert]:
        out: list[Alert] = []
        cfg, windows = self.config, self.config.windows
        for fn, name in rules:
            finding = fn(f, cfg.rules[name], windows)
            if finding is None:
                continue
            update = self._suppress.decide(f.host, finding, f.ts)
            if update is None:
                continue
            alert = make_alert(cfg.site.sensor, f, finding, update)
            self._out(alert)
            out.append(alert)
        return out

    def _evaluate(self, st: HostState, mask: int) -> None:
        """Run the rules whose trigger counts the record grew (TRIGGERS) and whose gate passes
        (GATES), so that a host's features are only snapshot when some rule may fire."""
        if not mask & self._any_mask:
            return
        home, mta = st.in_home_net, st.mail_server
        key = (mask, home, mta)
        gated = self._triggered.get(key)
        if gated is None:
            gated = tuple((gate, r) for m, gate, r in self._gated
                          if m & mask and gate.admits(home, mta))
            if len(self._triggered) >= MAX_MASKS:
                self._triggered.clear()
            self._triggered[key] = gated
        if not gated:
            return
        rules = [r for gate, r in gated if not gate.needs or st.reaches(gate.needs, gate.min_hits)]
        if rules:
            self._run(self.table.snapshot(st), rules)

    def finish(self) -> DetectorStats:
        """End of input (rules already ran per record): returns the counters and releases the
        per-host state at once, rather than leaving a large table to the cyclic collector."""
        stage = self.stage
        if stage is not None:
            try:
                stage.finish()
            finally:
                stage.scorer.close()
        stats = self.stats
        self.table.release()
        return stats

    @property
    def stats(self) -> DetectorStats:
        """Current counters."""
        t = self.table.stats
        return DetectorStats(
            records=t.records, hosts=t.hosts, hosts_active=len(self.table), evicted=t.evicted,
            events_dropped=self.table.dropped_events(), users_evicted=t.users_evicted,
            hosts_expired=t.expired, loss_failed_conns=t.loss_failed_conns,
            unattributed_conns=t.unattributed_conns,
            alerts=self._alerts, updates=self._suppress.updates,
            suppressed=self._suppress.suppressed, alerts_by_kind=dict(self._alerts_by_kind),
            model=self.model_name if self.stage is not None else "",
            model_scored=self.stage.scored if self.stage is not None else 0,
            model_batches=self.stage.batches if self.stage is not None else 0,
            model_early_batches=self.stage.early_batches if self.stage is not None else 0,
            model_alerts=self.stage.alerts if self.stage is not None else 0,
            model_waits=self.stage.waits if self.stage is not None else 0)

    def host_scores(self) -> list[dict[str, Any]]:
        """Every scored host's highest model score, most anomalous first (empty without a model)."""
        return self.stage.host_scores() if self.stage is not None else []
