"""A private Postfix (3.7, Debian's ``postfix``) for tests, on loopback: real DSNs within a second or two.

``Postfix(virtual_domains=..., lmtp=...).start()`` writes its own ``main.cf``/``master.cf`` into a fresh
temporary directory, creates the queue itself and runs Postfix's ``master`` as a child process (in the
foreground, under a small reaper, see below). Nothing of the system's ``/etc/postfix`` is read: the
config directory, queue, data directory, log file and the pseudo ``meta_directory`` are all in the
temporary directory. One submission-like ``smtpd`` listener on a free high port of 127.0.0.1 (``port``),
open to 127.0.0.0/8 without auth, is what tests send through.

Routing: ``virtual_domains`` are delivered over LMTP (``lmtp="inet:127.0.0.1:PORT"``, e.g. a
``Dovecot``'s LMTP listener); ``routes`` (a ``transport_maps`` in ``texthash`` form) send a domain to
``error:5.7.1 text`` (a failed DSN with that status), ``smtp:[127.0.0.1]:CLOSED_PORT`` or
``retry:4.4.1 text`` (deferrals: ``Action: delayed`` warnings), ``remote:NAME`` (an SMTP hop that
answers RCPT with the reply given in ``remotes``, so the DSN quotes a real "host ... said: 451 ..."),
anything else Postfix knows. Every other destination bounces with ``error:5.4.4`` (nothing leaves
loopback). Queue and log: ``flush()``, ``queue_ids()``, ``delete()``, ``empty_queue()``,
``log_text()``, ``wait_for_log()``.

``tests/servers/mail_loop.py`` pairs it with a Sieve-enabled ``Dovecot``.

Facts found while writing this (beyond /work/shared/TESTING.md), Postfix 3.7.11 on Debian, run as root:

* ``master`` refuses to run unless root ("reserved for the superuser"); ``start()`` raises
  ``PostfixUnavailable`` (tests skip on it) when not root, or when postfix/postdrop do not exist.
* ``postfix -c DIR check`` (and ``start``) run ``post-install``, which needs ``$meta_directory/
  postfix-files`` (Debian: /etc/postfix). We skip ``postfix-script`` altogether: the queue directories
  are created here with the owners/modes of postfix-files (queue dir root 0755; ``maildrop``
  postfix:postdrop 0730, ``public`` postfix:postdrop 0710, ``pid`` root 0755, the rest postfix 0700;
  data_directory postfix 0700) and ``master -c DIR -s`` is started directly. ``meta_directory`` points
  at the config directory (with an empty ``dynamicmaps.cf``; hash and texthash are built in).
* ``maillog_file`` is refused outside ``maillog_file_prefixes`` (default ``/var, /dev/stdout``): set it
  to the temporary directory. The ``postlog`` service (``unix-dgram ... postlogd``) must be in master.cf.
* Every service runs with ``chroot = n`` (a chroot in the queue directory would need copies of /etc files).
* smtpd refuses at RCPT, with no DSN, a recipient whose transport is ``error:``/``retry:`` (``550 5.7.1
  <a@x>: Recipient address rejected: TEXT``, ``450 4.4.1 ...``): the listener runs with
  ``smtpd_reject_unlisted_recipient = no`` so such mail is accepted and bounced by the queue, as a
  real MTA further down the line would. (A virtual-domain recipient is accepted either way while
  ``virtual_mailbox_maps`` is empty; Dovecot's LMTP decides.)
* Postfix reads a ``main.cf`` modified in the last ~2 s only after waiting for it to settle (300 ms
  sleeps, a 2.4 s start): the files written here are backdated 10 s, so a start takes ~0.1 s.
* ``delay_warning_time = 1s`` works: the ``Action: delayed`` report is mailed at the first deferral,
  ~0.1 s after arrival (bounce(8) logs a harmless "zero result in delay template conversion of
  delay_warning_time_hours" warning, and the notice text says "0 hours"). ``queue_run_delay =
  minimal_backoff_time = 1s``, ``maximal_backoff_time = 2s``, ``transport_retry_time = 1s`` retry a
  deferred message every second; ``in_flow_delay = 0`` keeps smtpd from pacing.
* On SIGTERM ``master`` SIGTERMs its process group and exits at once: its children die as orphans and
  stay zombies until pid 1 reaps them. So ``master`` runs under ``tests/servers/subreaper.py``
  (``PR_SET_CHILD_SUBREAPER``): it forwards SIGTERM, reaps every orphan, SIGKILLs any still there after
  5 s, and exits only when nothing it started is left; ``PR_SET_PDEATHSIG`` stops it all if the test
  process dies. A stop takes ~0.05 s. (``master`` calls setsid(): it is in a session of its own.)
* ``route()`` after start rewrites the texthash file (read once per process) and reloads (SIGHUP to
  master, ~50 ms): the next message takes the new route (tested). Routes given to the constructor
  need no reload.
* A ``remotes`` hop is another smtpd listener of the same master: it needs its own ``myhostname``
  (Postfix's smtp client bounces, "loops back to myself", mail to a server greeting with its own name),
  and a ``reject`` after the ``check_recipient_access static:{4xx text}`` (smtpd refuses relay
  restrictions without one). Its refusal is worded "<a@x>: Recipient address rejected: TEXT".
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from tests.servers.dovecot import _children_of, _port_open, free_port

HOST = "127.0.0.1"
START_TIMEOUT = 10.0
DAEMON_DIRECTORY = Path("/usr/lib/postfix/sbin")
MAIL_OWNER = "postfix"
SETGID_GROUP = "postdrop"
QUEUE_SUBDIRS = ("active", "bounce", "corrupt", "defer", "deferred", "flush", "hold", "incoming", "private")
QUEUE_SUBDIRS_MORE = ("saved", "trace")

SUBREAPER = Path(__file__).with_name("subreaper.py")


class PostfixError(RuntimeError):
    pass


class PostfixUnavailable(PostfixError):
    """Postfix cannot run here (not installed, not root, no postfix user): tests skip on this."""


def postfix_unavailable_reason() -> str:
    """Why a private Postfix cannot run on this machine, or ``""`` when it can."""
    if not (DAEMON_DIRECTORY / "master").exists() or shutil.which("postqueue") is None:
        return "Postfix is not installed (Debian: scripts/install-test-deps installs postfix)"
    if os.geteuid() != 0:
        return "a private Postfix needs root (Postfix's master refuses to run as another user)"
    try:
        pwd.getpwnam(MAIL_OWNER)
        grp.getgrnam(SETGID_GROUP)
    except KeyError:
        return f"user {MAIL_OWNER!r} or group {SETGID_GROUP!r} missing (install Debian's postfix package)"
    return ""


class Postfix:
    """One private Postfix instance; a context manager (``with Postfix(...) as postfix:``)."""

    def __init__(
        self,
        *,
        virtual_domains: Iterable[str] = (),
        lmtp: str = "",
        routes: Mapping[str, str] | None = None,
        remotes: Mapping[str, str] | None = None,
        port: int = 0,
        myhostname: str = "mx.nimbus-postfix.test",
        delay_warning_time: str = "1s",
        bounce_queue_lifetime: str = "1d",
        maximal_queue_lifetime: str = "1d",
        extra_main: Mapping[str, str] | None = None,
    ) -> None:
        """``lmtp``: where ``virtual_domains`` go, ``inet:127.0.0.1:PORT`` or ``unix:/path``; ``port``: the
        listener port (0: a free one, picked again if lost at start; a given port is kept, so another
        server can be configured with it before this one starts). ``remotes``: name -> an SMTP reply
        (``"451 4.2.1 Mailbox busy"``): an extra smtpd listener of this instance, posing as another
        host, that answers every RCPT TO with that reply; route a domain to it with the transport
        ``remote:NAME``."""
        self.virtual_domains = [d.lower() for d in virtual_domains]
        self.lmtp = lmtp
        self.routes = {k.lower(): v for k, v in (routes or {}).items()}
        self.myhostname = myhostname
        self.delay_warning_time = delay_warning_time
        self.bounce_queue_lifetime = bounce_queue_lifetime
        self.maximal_queue_lifetime = maximal_queue_lifetime
        self.extra_main = dict(extra_main or {})
        self._fixed_port = port
        self.port = port or free_port()
        self.remotes = dict(remotes or {})
        for name, reply in self.remotes.items():
            if not re.fullmatch(r"[a-z0-9]+", name) or not re.fullmatch(r"[45]\d\d [^{}\n]+", reply):
                raise ValueError("a remote is named [a-z0-9]+ and answers '4xx/5xx text' (no braces)")
        self.remote_ports = {name: free_port() for name in self.remotes}
        self.root = Path(tempfile.mkdtemp(prefix="nimbus-postfix-"))
        self.root.chmod(0o755)  # postfix-owned processes traverse it
        self.config_dir = self.root / "conf"
        self.queue_dir = self.root / "queue"
        self.data_dir = self.root / "data"
        self.log_file = self.root / "maillog"
        self.transport_file = self.config_dir / "transport"
        self._proc: subprocess.Popen[bytes] | None = None

    # --- lifecycle

    def __enter__(self) -> Postfix:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        reason = postfix_unavailable_reason()
        if reason:
            raise PostfixUnavailable(reason)
        if self.virtual_domains and not self.lmtp:
            raise ValueError("virtual_domains need an lmtp destination (inet:127.0.0.1:PORT or unix:/path)")
        self._make_dirs()
        last_error = ""
        for _ in range(1 if self._fixed_port else 3):
            self._write_config()
            try:
                self._launch()
                return
            except PostfixError as exc:  # most likely the port was taken between picking and binding
                last_error = str(exc)
                self._terminate()
                self.port = self._fixed_port or free_port()
                self.remote_ports = {name: free_port() for name in self.remotes}
        raise PostfixError(last_error)

    def _make_dirs(self) -> None:
        owner = pwd.getpwnam(MAIL_OWNER).pw_uid
        postdrop = grp.getgrnam(SETGID_GROUP).gr_gid
        self.config_dir.mkdir(exist_ok=True)
        self.config_dir.chmod(0o755)
        (self.config_dir / "dynamicmaps.cf").touch()
        self.queue_dir.mkdir(exist_ok=True)
        self.queue_dir.chmod(0o755)
        for name in (*QUEUE_SUBDIRS, *QUEUE_SUBDIRS_MORE):
            path = self.queue_dir / name
            path.mkdir(exist_ok=True)
            os.chown(path, owner, 0)
            path.chmod(0o700)
        for name, mode in (("maildrop", 0o730), ("public", 0o710)):
            path = self.queue_dir / name
            path.mkdir(exist_ok=True)
            os.chown(path, owner, postdrop)
            path.chmod(mode)
        (self.queue_dir / "pid").mkdir(exist_ok=True)
        (self.queue_dir / "pid").chmod(0o755)
        self.data_dir.mkdir(exist_ok=True)
        os.chown(self.data_dir, owner, 0)
        self.data_dir.chmod(0o700)

    def _launch(self) -> None:
        stderr = (self.root / "stderr.log").open("wb")
        try:
            master = [str(DAEMON_DIRECTORY / "master"), "-c", str(self.config_dir), "-s"]
            self._proc = subprocess.Popen(
                [sys.executable, "-I", str(SUBREAPER), *master],
                stdin=subprocess.DEVNULL,
                stdout=stderr,
                stderr=stderr,
                start_new_session=True,
            )
        finally:
            stderr.close()
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise PostfixError(f"postfix master exited with {self._proc.returncode}:\n{self.diagnostics()}")
            if _port_open(self.port) and "daemon started" in self.log_text():
                return
            time.sleep(0.02)
        raise PostfixError(f"postfix did not open port {self.port} within {START_TIMEOUT} s:\n{self.diagnostics()}")

    def stop(self) -> None:
        self._terminate()
        shutil.rmtree(self.root, ignore_errors=True)

    def _terminate(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        tree = self._tree(proc.pid)
        proc.send_signal(signal.SIGTERM)  # the reaper forwards it to master and waits for everything
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # not seen; master and the reaper are in sessions of their own
            for pid in {*tree, *self._tree(proc.pid)}:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            proc.wait(timeout=5)

    def diagnostics(self) -> str:
        parts = []
        for path in (self.root / "stderr.log", self.log_file):
            if path.exists():
                parts.append(f"--- {path.name}\n{path.read_text(errors='replace')[-4000:]}")
        return "\n".join(parts)

    def log_text(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""

    def wait_for_log(self, pattern: str, *, timeout: float = 20.0, start: int = 0) -> re.Match[str]:
        """Poll the log (from character ``start``) until ``pattern`` (a regex) matches."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            found = regex.search(self.log_text(), start)
            if found:
                return found
            if time.monotonic() > deadline:
                raise PostfixError(f"no log line matching {pattern!r} within {timeout} s:\n{self.diagnostics()}")
            time.sleep(0.05)

    def processes(self) -> list[int]:
        """Pids of the reaper and everything under it (for leak checks)."""
        if self._proc is None or self._proc.poll() is not None:
            return []
        return self._tree(self._proc.pid)

    @staticmethod
    def _tree(root: int) -> list[int]:
        found, todo = [], [root]
        while todo:
            pid = todo.pop()
            found.append(pid)
            todo.extend(_children_of(pid))
        return found

    # --- configuration

    def main_cf(self) -> dict[str, str]:
        no_route = "no route in tests"
        settings = {
            "config_directory": str(self.config_dir),
            "meta_directory": str(self.config_dir),
            "queue_directory": str(self.queue_dir),
            "data_directory": str(self.data_dir),
            "mail_owner": MAIL_OWNER,
            "setgid_group": SETGID_GROUP,
            "compatibility_level": "3.6",
            "maillog_file": str(self.log_file),
            "maillog_file_prefixes": str(self.root),
            "syslog_name": "postfix",
            "inet_interfaces": HOST,
            "inet_protocols": "ipv4",
            "smtp_dns_support_level": "disabled",
            "lmtp_dns_support_level": "disabled",
            "smtp_host_lookup": "native",
            "lmtp_host_lookup": "native",
            "myhostname": self.myhostname,
            "mydomain": self.myhostname.partition(".")[2] or "test",
            "myorigin": "$myhostname",
            "mydestination": "",
            "mynetworks": "127.0.0.0/8",
            "relayhost": "",
            "alias_maps": "",
            "alias_database": "",
            "local_recipient_maps": "",
            "local_transport": f"error:5.1.1 {no_route}",
            "default_transport": f"error:5.4.4 {no_route}",
            "relay_transport": f"error:5.4.4 {no_route}",
            "virtual_mailbox_domains": ", ".join(self.virtual_domains),
            "virtual_transport": f"lmtp:{self.lmtp}" if self.lmtp else "error:5.4.4 no lmtp destination",
            "transport_maps": f"texthash:{self.transport_file}",
            "smtpd_relay_restrictions": "permit_mynetworks, reject",
            "smtpd_recipient_restrictions": "",
            "smtpd_banner": "$myhostname ESMTP",
            "biff": "no",
            "append_dot_mydomain": "no",
            "in_flow_delay": "0",
            "delay_warning_time": self.delay_warning_time,
            "bounce_queue_lifetime": self.bounce_queue_lifetime,
            "maximal_queue_lifetime": self.maximal_queue_lifetime,
            "queue_run_delay": "1s",
            "minimal_backoff_time": "1s",
            "maximal_backoff_time": "2s",
            "transport_retry_time": "1s",
            "smtp_connect_timeout": "5s",
            "lmtp_connect_timeout": "5s",
        }
        for name, reply in self.remotes.items():
            # an access result "4xx/5xx text" for every recipient; "reject" satisfies smtpd's relay check
            settings[f"nimbus_remote_{name}_restrictions"] = f"check_recipient_access static:{{{reply}}}, reject"
        settings.update(self.extra_main)
        return settings

    def master_cf(self) -> str:
        services = [
            # name, type, private, unpriv, chroot, wakeup, maxproc, command
            (f"{HOST}:{self.port}", "inet", "n", "-", "n", "-", "-", "smtpd -o smtpd_reject_unlisted_recipient=no"),
            *[
                (
                    f"{HOST}:{self.remote_ports[name]}",
                    *("inet", "n", "-", "n", "-", "-"),
                    # its own host name: Postfix's smtp client bounces mail that greets it with its own
                    f"smtpd -o myhostname=mx.{name}.remote.test"
                    f" -o smtpd_relay_restrictions=$nimbus_remote_{name}_restrictions",
                )
                for name in self.remotes
            ],
            ("pickup", "unix", "n", "-", "n", "60", "1", "pickup"),
            ("cleanup", "unix", "n", "-", "n", "-", "0", "cleanup"),
            ("qmgr", "unix", "n", "-", "n", "300", "1", "qmgr"),
            ("rewrite", "unix", "-", "-", "n", "-", "-", "trivial-rewrite"),
            ("bounce", "unix", "-", "-", "n", "-", "0", "bounce"),
            ("defer", "unix", "-", "-", "n", "-", "0", "bounce"),
            ("trace", "unix", "-", "-", "n", "-", "0", "bounce"),
            ("verify", "unix", "-", "-", "n", "-", "1", "verify"),
            ("flush", "unix", "n", "-", "n", "1000?", "0", "flush"),
            ("proxymap", "unix", "-", "-", "n", "-", "-", "proxymap"),
            ("smtp", "unix", "-", "-", "n", "-", "-", "smtp"),
            ("relay", "unix", "-", "-", "n", "-", "-", "smtp"),
            ("showq", "unix", "n", "-", "n", "-", "-", "showq"),
            ("error", "unix", "-", "-", "n", "-", "-", "error"),
            ("retry", "unix", "-", "-", "n", "-", "-", "error"),
            ("discard", "unix", "-", "-", "n", "-", "-", "discard"),
            ("lmtp", "unix", "-", "-", "n", "-", "-", "lmtp"),
            ("anvil", "unix", "-", "-", "n", "-", "1", "anvil"),
            ("scache", "unix", "-", "-", "n", "-", "1", "scache"),
            ("postlog", "unix-dgram", "n", "-", "n", "-", "1", "postlogd"),
        ]
        return "".join(" ".join(fields) + "\n" for fields in services)

    def _write_config(self) -> None:
        main = "".join(f"{key} = {value}\n" for key, value in self.main_cf().items())
        (self.config_dir / "main.cf").write_text(main)
        (self.config_dir / "master.cf").write_text(self.master_cf())
        self._write_transport()
        _backdate(self.config_dir / "main.cf", self.config_dir / "master.cf")

    def _write_transport(self) -> None:
        text = "".join(f"{domain} {self.transport(route)}\n" for domain, route in sorted(self.routes.items()))
        tmp = self.transport_file.with_suffix(".tmp")
        tmp.write_text(text)
        _backdate(tmp)
        tmp.replace(self.transport_file)

    def transport(self, route: str) -> str:
        """The Postfix transport for a route (``remote:NAME`` is the smtp client to that remote)."""
        kind, _, name = route.partition(":")
        if kind == "remote":
            if name not in self.remote_ports:
                raise ValueError(f"no remote {name!r} (Postfix(remotes={{{name!r}: '451 ...'}}))")
            return f"smtp:[{HOST}]:{self.remote_ports[name]}"
        return route

    def route(self, domain: str, transport: str) -> None:
        """Route ``domain`` to ``transport`` (``error:5.7.1 text``, ``smtp:[127.0.0.1]:PORT``...); reloads
        a running instance."""
        if re.search(r"\s", domain) or "\n" in transport:
            raise ValueError("a domain has no white space; a transport is one line")
        self.routes[domain.lower()] = transport
        if self.running:
            self._write_transport()
            self.reload()

    def reload(self) -> None:
        mark = len(self.log_text())
        pid_file = self.queue_dir / "pid" / "master.pid"
        os.kill(int(pid_file.read_text().split()[0]), signal.SIGHUP)
        self.wait_for_log(r"postfix/master\[\d+\]: reload", timeout=5, start=mark)

    # --- queue

    def _run(self, *args: str) -> str:
        result = subprocess.run(list(args), capture_output=True, text=True, timeout=20)
        if result.returncode != 0:
            raise PostfixError(f"{' '.join(args)} failed ({result.returncode}): {result.stderr.strip()}")
        return result.stdout

    def flush(self) -> None:
        """Attempt to deliver every queued message now (``postqueue -f``)."""
        self._run("postqueue", "-c", str(self.config_dir), "-f")

    def queue_ids(self) -> list[str]:
        """Ids of the messages in the queue (``postqueue -j``)."""
        import json

        out = self._run("postqueue", "-c", str(self.config_dir), "-j")
        return [json.loads(line)["queue_id"] for line in out.splitlines() if line.strip()]

    def delete(self, queue_id: str = "ALL") -> None:
        """Delete one queued message, or every one (``postsuper -d``)."""
        self._run("postsuper", "-c", str(self.config_dir), "-d", queue_id)

    def empty_queue(self) -> None:
        self.delete("ALL")


def _backdate(*paths: Path) -> None:
    """Postfix waits (300 ms steps, up to ~2 s) for a config file modified within the last seconds to
    settle before reading it; files we just wrote are dated 10 s back."""
    then = time.time() - 10
    for path in paths:
        os.utime(path, (then, then))


def wait_until(check: Callable[[], bool], *, timeout: float = 20.0, interval: float = 0.05) -> bool:
    """Poll ``check`` until it is true or ``timeout`` s have passed; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
