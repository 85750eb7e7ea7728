"""Turns an actor's parameters into concrete session plans: who talks to whom, saying what."""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Iterable
from dataclasses import dataclass

from sensor.errors import ConfigError
from sensor.simulate.content import (
    BodyTemplate,
    build_templates,
    compose,
    domain_name,
    random_local_part,
    user_name,
)
from sensor.simulate.dialogue import AuthPlan, SessionPlan, TxnPlan
from sensor.simulate.frames import SMTP_PORT, SUBMISSION_PORT, OsProfile
from sensor.simulate.servers import POSTFIX, PROFILES, Reply, ServerProfile
from sensor.simulate.spec import INTERNAL_KINDS, Actor, ActorKind, AuthMech, HeloStyle, Site, Target
from sensor.simulate.tcpflow import ConnectOutcome, Impairments

DOMAIN_UNIVERSE = 50_000  # distinct internet domains actors can mail to
PROVIDERS = 4  # outside mail providers whose submission servers an actor's hosts log in to
STOLEN_ACCOUNTS = 6  # accounts of foreign domains a submission bot holds, when none are given
_PASSWORDS = ("123456", "password", "qwerty", "admin123", "letmein", "Summer2026!", "welcome1")


@dataclass(slots=True, frozen=True)
class Server:
    """A server a session can reach."""

    ip: str
    name: str
    profile: ServerProfile
    os: OsProfile
    internal: bool
    domain: str
    port: int = SMTP_PORT


def _pool_addresses(networks: Iterable[str], version: int, count: int, used: set[str],
                    rng: random.Random | None) -> list[str]:
    """`count` unused addresses of the given IP version from `networks`, in a stable order."""
    out: list[str] = []
    for text in networks:
        net = ipaddress.ip_network(text, strict=False)
        if net.version != version:
            continue
        size = net.num_addresses
        if size == 1:
            candidates: Iterable[int] = (0,)
        else:
            first = rng.randrange(1, max(2, min(size, 1 << 20) - 1)) if rng else 1
            candidates = (1 + (first - 1 + k) % (size - 2 if size > 2 else 1)
                          for k in range(min(size, 1 << 20)))
        for offset in candidates:
            addr = str(net.network_address + offset)
            if addr not in used:
                used.add(addr)
                out.append(addr)
                if len(out) == count:
                    return out
    return out


def allocate_hosts(actor: Actor, site: Site, used: set[str], rng: random.Random) -> list[str]:
    """Distinct host addresses for an actor, from its pools or the kind's default pool."""
    if actor.hosts:
        nets = actor.hosts
    elif actor.kind is ActorKind.OUTBOUND_MTA:
        nets = tuple(a for a in site.mail_servers if a not in used)[:actor.count] or site.home_net
    elif actor.kind in INTERNAL_KINDS:
        nets = tuple(str(n) for n in _inner(site.home_net))
    else:
        nets = site.internet
    versions = sorted({ipaddress.ip_network(n, strict=False).version for n in nets})
    version = 4 if 4 in versions else 6
    external = not actor.hosts and actor.kind not in INTERNAL_KINDS
    hosts = _pool_addresses(nets, version, actor.count, used, rng if external else None)
    if len(hosts) < actor.count:
        raise ConfigError(f"actor {actor.name}: hosts: pool {', '.join(nets)} has only "
                          f"{len(hosts)} free addresses for count = {actor.count}")
    return hosts


def _inner(home_net: tuple[str, ...]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """Client subnets of home_net, leaving its first /24 to servers."""
    out: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    for text in home_net:
        net = ipaddress.ip_network(text, strict=False)
        if net.version == 4 and net.prefixlen <= 22:
            out.extend(list(net.subnets(new_prefix=24))[4:])
        else:
            out.append(net)
    return out


def _domain(index: int) -> str:
    return domain_name(random.Random(f"domain/{index}"))


class ActorRuntime:
    """One actor's hosts, destinations and message bodies, and the plans of its sessions."""

    def __init__(self, actor: Actor, site: Site, hosts: list[str], seed: int,
                 ours: dict[Target, list[Server]]) -> None:
        self.actor = actor
        self.site = site
        self.hosts = hosts
        self.seed = seed
        self.ours = ours
        rng = random.Random(f"{seed}/actor/{actor.name}")
        self.dest_ids = [rng.randrange(DOMAIN_UNIVERSE) for _ in range(actor.destinations)]
        self.host_domain = [_domain(rng.randrange(DOMAIN_UNIVERSE)) for _ in hosts]
        self.hops = [max(0, actor.hops + rng.randint(-1, 2)) for _ in hosts]
        self.impair = Impairments(actor.retransmit, actor.reorder)
        self._templates: list[BodyTemplate] | None = None
        self._template_rng = random.Random(f"{seed}/templates/{actor.name}")
        users = random.Random("users/" + ",".join(site.local_domains))
        self.local_users = sorted({user_name(users) for _ in range(site.users)})
        self.internal = actor.kind in INTERNAL_KINDS
        self.provider_ids = [rng.randrange(DOMAIN_UNIVERSE) for _ in range(PROVIDERS)]
        # a bot's stolen accounts: addresses of domains that are neither ours nor the provider's
        self.stolen = [f"{user_name(rng)}@{_domain(rng.randrange(DOMAIN_UNIVERSE))}"
                       for _ in range(STOLEN_ACCOUNTS)]

    def templates(self) -> list[BodyTemplate]:
        """Message bodies, built on first use."""
        if self._templates is None:
            a = self.actor
            self._templates = build_templates(self._template_rng, a.flavour, a.templates,
                                              a.size_median, a.size_sigma, a.attach, a.html)
        return self._templates

    def _external_server(self, rng: random.Random, version: int) -> Server:
        a = self.actor
        if a.kind is ActorKind.SPAMBOT:
            idx = rng.choice(self.dest_ids)
        else:  # benign senders favour a few big destinations
            idx = self.dest_ids[int(len(self.dest_ids) * rng.random() ** 2)]
        pools = [n for n in self.site.external_mx
                 if ipaddress.ip_network(n, strict=False).version == version]
        if not pools:
            raise ConfigError(f"actor {a.name}: site.external_mx has no IPv{version} pool")
        net = ipaddress.ip_network(pools[idx % len(pools)], strict=False)
        ip = str(net.network_address + 1 + (idx * 7919) % max(1, net.num_addresses - 2))
        profile = PROFILES[idx % len(PROFILES)]
        os = OsProfile.WINDOWS if profile.name == "exchange" else (
            OsProfile.FREEBSD if idx % 5 == 0 else OsProfile.LINUX)
        dom = _domain(idx)
        return Server(ip, f"mx{1 + idx % 3}.{dom}", profile, os, False, dom)

    def _submission_server(self, rng: random.Random, host_index: int, version: int) -> Server:
        """An outside provider's submission server; each host mostly uses one provider."""
        a = self.actor
        ids = self.provider_ids
        idx = ids[host_index % len(ids)] if rng.random() < 0.8 else rng.choice(ids)
        pools = [n for n in self.site.external_mx
                 if ipaddress.ip_network(n, strict=False).version == version]
        if not pools:
            raise ConfigError(f"actor {a.name}: site.external_mx has no IPv{version} pool")
        net = ipaddress.ip_network(pools[idx % len(pools)], strict=False)
        ip = str(net.network_address + 1 + (idx * 7919 + 5) % max(1, net.num_addresses - 2))
        dom = _domain(idx)
        return Server(ip, f"smtp.{dom}", POSTFIX, OsProfile.LINUX, False, dom, SUBMISSION_PORT)

    def _our_server(self, rng: random.Random, version: int) -> Server:
        a = self.actor
        choices = [s for s in self.ours.get(a.target, [])
                   if ipaddress.ip_address(s.ip).version == version]
        if not choices:
            raise ConfigError(f"actor {a.name}: target {a.target.value}: the site has no "
                              f"IPv{version} server of that role")
        return rng.choice(choices)

    def _helo(self, rng: random.Random, host_index: int, ip: str, server: Server) -> str:
        style = self.actor.helo
        h = random.Random(f"helo/{ip}")
        if style is HeloStyle.FQDN:
            dom = self.site.local_domains[0] if self.internal else self.host_domain[host_index]
            return f"{h.choice(('mail', 'mx', 'smtp', 'out'))}{h.randint(1, 40)}.{dom}"
        if style is HeloStyle.BARE:
            return f"{h.choice(('DESKTOP', 'PRN', 'NAS', 'WIN'))}-{h.getrandbits(24):06X}"
        if style is HeloStyle.IP:
            return f"[{ip}]" if ":" not in ip else f"[IPv6:{ip}]"
        if style is HeloStyle.OTHER_IP:  # not its own: an address the bot was told, or made up
            if ":" in ip:
                return f"[IPv6:2001:db8:fe00::{h.getrandbits(16):x}]"
            return f"[198.19.{h.randint(0, 255)}.{h.randint(1, 254)}]"
        return rng.choice((server.domain, "localhost", "user", ip, "xx_" + random_local_part(rng),
                           f"{random_local_part(rng)}.{server.domain}"))

    def plan(self, host_index: int, session_index: int, ts_s: float,
             rng: random.Random) -> tuple[SessionPlan, Server]:
        """The plan of one session of one host."""
        a, kind = self.actor, self.actor.kind
        ip = self.hosts[host_index]
        version = ipaddress.ip_address(ip).version
        if a.target is Target.EXTERNAL:
            server = self._external_server(rng, version)
        elif a.target is Target.SUBMISSION:
            server = self._submission_server(rng, host_index, version)
        else:
            server = self._our_server(rng, version)
        outcome = ConnectOutcome.ESTABLISHED
        roll = rng.random()
        if roll < a.refused:
            outcome = ConnectOutcome.REFUSED
        elif roll < a.refused + a.unanswered:
            outcome = ConnectOutcome.UNANSWERED
        ext = server.profile.extensions
        auths = self._auths(session_index, rng, host_index, server)
        ehlo = bool(auths) or rng.random() < a.ehlo
        plan = SessionPlan(
            outcome=outcome, profile=server.profile, server_name=server.name, client_ip=ip,
            helo_name=self._helo(rng, host_index, ip, server), ehlo=ehlo,
            pregreet=rng.random() < a.pregreet,
            blocked=a.blocklist_text if rng.random() < a.blocklisted else None,
            offer_auth=a.target in (Target.RELAY, Target.OPEN_RELAY, Target.SUBMISSION),
            starttls=ehlo and "STARTTLS" in ext and rng.random() < a.tls,
            pipelining=ehlo and a.pipelining and "PIPELINING" in ext,
            auths=auths, quit=rng.random() < a.quit)
        plan.reset = not plan.quit and rng.random() < 0.5
        failed_auth = bool(auths) and not auths[-1].ok
        if not failed_auth and not (kind is ActorKind.COMPROMISED_ACCOUNT
                                    and session_index < a.fail_sessions):
            n = rng.randint(*a.messages)
            # a client that uses CHUNKING uses it for every message of the session
            bdat = ehlo and "CHUNKING" in ext and rng.random() < a.bdat
            account = auths[-1].user if auths and a.target is Target.SUBMISSION else None
            plan.txns = [self._txn(rng, host_index, ip, server, ts_s, bdat, bool(auths), account)
                         for _ in range(n)]
        return plan, server

    def _auths(self, session_index: int, rng: random.Random, host_index: int,
               server: Server) -> list[AuthPlan]:
        a = self.actor
        if a.auth is AuthMech.NONE:
            return []
        users = a.auth_users or tuple(self.local_users[:50])
        if a.kind is ActorKind.MAIL_CLIENT and not a.auth_users:  # its own provider account
            users = (f"{self.local_users[(host_index * 37) % len(self.local_users)]}"
                     f"@{server.domain}",)
        elif a.kind is ActorKind.SUBMISSION_SPAMBOT and not a.auth_users:
            users = tuple(self.stolen)
        if a.kind is ActorKind.COMPROMISED_ACCOUNT:
            victim = users[0]
            if session_index < a.fail_sessions:
                return [AuthPlan(a.auth, victim, rng.choice(_PASSWORDS), False)
                        for _ in range(rng.randint(*a.auth_attempts))]
            return [AuthPlan(a.auth, victim, "Correct-Horse-7", True)]
        out = []
        for _ in range(rng.randint(*a.auth_attempts)):
            ok = rng.random() >= a.auth_fail
            out.append(AuthPlan(a.auth, rng.choice(users), rng.choice(_PASSWORDS), ok))
            if ok:
                break
        return out

    def _sender(self, rng: random.Random, host_index: int) -> str:
        kind = self.actor.kind
        if kind in (ActorKind.OUTBOUND_MTA, ActorKind.COMPROMISED_ACCOUNT):
            return f"{rng.choice(self.local_users)}@{self.site.local_domains[0]}"
        if kind is ActorKind.APPLIANCE:
            return f"scanner-{host_index}@{self.site.local_domains[0]}"
        if kind is ActorKind.NEWSLETTER:
            return f"bounce-{rng.getrandbits(32):08x}@news.{self.host_domain[host_index]}"
        if kind is ActorKind.MONITORING:
            return f"monitor@{self.site.local_domains[0]}"
        if kind in (ActorKind.SPAMBOT, ActorKind.SPAM_SOURCE, ActorKind.RELAY_ABUSE,
                    ActorKind.DICTIONARY_HARVEST):
            return f"{random_local_part(rng)}@{_domain(rng.randrange(DOMAIN_UNIVERSE))}"
        return f"{user_name(rng)}@{self.host_domain[host_index]}"

    def _recipient(self, rng: random.Random, server: Server) -> tuple[str, bool]:
        """A recipient address and whether it exists."""
        a = self.actor
        if a.target is Target.SUBMISSION:  # the provider relays to anywhere
            return f"{user_name(rng)}@{_domain(rng.choice(self.dest_ids))}", True
        if a.target is Target.EXTERNAL:
            return f"{user_name(rng)}@{server.domain}", True
        if a.target in (Target.OPEN_RELAY,) or a.kind is ActorKind.COMPROMISED_ACCOUNT:
            return f"{user_name(rng)}@{_domain(rng.choice(self.dest_ids))}", True
        dom = rng.choice(self.site.local_domains)
        if rng.random() < a.unknown_user:
            return f"{random_local_part(rng)}@{dom}", False
        return f"{rng.choice(self.local_users)}@{dom}", True

    def _txn(self, rng: random.Random, host_index: int, ip: str, server: Server, ts_s: float,
             bdat: bool, authed: bool, account: str | None = None) -> TxnPlan:
        a = self.actor
        sender = account if account is not None else self._sender(rng, host_index)
        roll = rng.random()
        mail_reply = Reply.MAIL_OK
        if roll < a.reject_4xx * 0.2:
            mail_reply = Reply.MAIL_TEMPFAIL
        elif roll < (a.reject_4xx + a.reject_5xx) * 0.2:
            mail_reply = Reply.MAIL_REJECTED
        rcpts: list[tuple[str, Reply]] = []
        for _ in range(rng.randint(*a.rcpts)):
            addr, exists = self._recipient(rng, server)
            foreign = addr.rpartition("@")[2] not in self.site.local_domains
            r = rng.random()
            if not exists:
                reply = Reply.USER_UNKNOWN
            elif (foreign and a.target is Target.RELAY and not authed
                  and not self.internal):
                reply = Reply.RELAY_DENIED
            elif r < a.reject_4xx:
                reply = Reply.GREYLISTED
            elif r < a.reject_4xx + a.reject_5xx:
                reply = Reply.RCPT_REJECTED
            else:
                reply = Reply.RCPT_OK
            rcpts.append((addr, reply))
        template = rng.choice(self.templates())
        received = [f"from {ip} by {server.name} with ESMTP id {rng.getrandbits(32):08X}"]
        message = compose(rng, template, a.flavour, ts_s, sender, [r for r, _ in rcpts],
                          received)
        data_reply = Reply.CONTENT_REJECTED if rng.random() < a.data_reject else Reply.QUEUED
        return TxnPlan(sender, mail_reply, rcpts, message, data_reply, bdat,
                       a.sloppy_paths > 0 and rng.random() < a.sloppy_paths)


def site_servers(site: Site) -> dict[Target, list[Server]]:
    """Our own servers by role, with stable names."""
    dom = site.local_domains[0] if site.local_domains else "campus.example"

    def servers(addrs: tuple[str, ...], stem: str) -> list[Server]:
        return [Server(ip, f"{stem}{i + 1}.{dom}", POSTFIX, OsProfile.LINUX, True, dom)
                for i, ip in enumerate(addrs)]

    return {Target.MX: servers(site.mx, "mx"), Target.RELAY: servers(site.relay or site.mx,
                                                                      "smtp"),
            Target.OPEN_RELAY: servers(site.open_relays, "legacy")}
