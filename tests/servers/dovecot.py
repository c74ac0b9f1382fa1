"""A private Dovecot (2.3, Debian's ``dovecot-imapd`` + ``dovecot-lmtpd``) for tests, on loopback.

``Dovecot(certs).start()`` writes a self-contained config into a fresh temporary directory and runs
``dovecot -F -c FILE`` as a child process (foreground: we own the process, stop it by its pid and reap
it; no daemon, no pid file to trust). Nothing of the system's ``/etc/dovecot`` is read, and nothing is
shared with another instance: own ``base_dir``, ``state_dir``, ``instance_name``, log file, and free high
ports picked at start (a start that loses a port race is retried with new ports).

What the config sets up:

* listeners on 127.0.0.1: ``imap`` (cleartext, offers STARTTLS), ``imaps`` (implicit TLS), ``lmtp``;
* ``ssl = yes`` with the test CA's server certificate; a client that asks (SNI) for
  ``UNTRUSTED_SNI`` gets the self-signed "untrusted" certificate instead (``local_name`` block), so the
  invalid-certificate case needs no second instance;
* users in passwd-files written by ``add_user``, one file per user so a new user is seen at once
  (Dovecot re-checks a passwd-file at most once a second; no auth cache); homes with maildirs under
  the temporary directory, owned by an unprivileged user (``nobody``/``nogroup`` when running as
  root, else the current user, with Dovecot's documented rootless settings);
* with ``oauth2_introspection_url``, XOAUTH2/OAUTHBEARER checked by an ``oauth2`` passdb, and a token
  whose introspection says ``"imap": "disabled"`` refused with its ``reason`` (Gmail with IMAP off);
* ``disable_plaintext_auth = no`` (the cleartext mode is tested), ``auth_failure_delay = 0`` and the
  auth penalty off (anvil's penalty socket closed to the auth process, as Dovecot documents; checked:
  ``login_trusted_networks`` alone does not lift it in 2.3.19), so a wrong password costs ~0.5 s
  (Dovecot flushes auth failures on a 500 ms timer) and does not slow down the logins after it;
* ``namespace inbox`` with special-use folders ``Junk`` (``\\Junk``), ``Sent``, ``Drafts``, ``Trash``
  created on first login;
* LMTP with ``lmtp_save_to_detail_mailbox``: ``user+Junk@domain`` delivers into Junk.

* optionally (``Dovecot(certs, sieve=True, submission_host="127.0.0.1:PORT")``) Pigeonhole's Sieve on
  LMTP delivery, scripts installed with ``set_sieve``, ``vacation :seconds`` allowed with no minimum
  period, and Sieve's outgoing mail (vacation replies) submitted over SMTP to ``submission_host``
  (``tests/servers/mail_loop.py`` points it at a private Postfix); off by default;

* no stats-writer connections (``stats_writer_socket_path =``), which keeps the stop fast.

Stopping sends SIGTERM to the master and reaps it (~1 s); children still starting up at that moment
(they would wait 5 s for their config) get SIGKILL by pid after 2 s; then it waits until every process
the master had started is gone, and removes the temporary directory.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import re
import shutil
import signal
import smtplib
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # keeps this module stdlib-only at run time
    from tests.servers.certs import TestCerts

HOST = "127.0.0.1"
UNTRUSTED_SNI = "mail.example.test"
"""Connecting with this TLS server name (SNI) gets the self-signed certificate."""
SPECIAL_FOLDERS = {"Junk": "\\Junk", "Sent": "\\Sent", "Drafts": "\\Drafts", "Trash": "\\Trash"}
START_TIMEOUT = 10.0


class DovecotError(RuntimeError):
    pass


@dataclass(frozen=True)
class DovecotPorts:
    imap: int
    imaps: int
    lmtp: int


def dovecot_available() -> bool:
    return shutil.which("dovecot") is not None and shutil.which("doveadm") is not None


def dovecot_version() -> str:
    return subprocess.run(["dovecot", "--version"], capture_output=True, text=True, check=True).stdout.strip()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.2):
            return True
    except OSError:
        return False


def _children_of(pid: int) -> list[int]:
    """Direct children of ``pid`` (from /proc)."""
    found: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may contain spaces and parentheses
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) > 1 and int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


class Dovecot:
    """One private Dovecot instance; a context manager (``with Dovecot(certs) as dovecot:``)."""

    def __init__(
        self,
        certs: TestCerts,
        *,
        sieve: bool = False,
        submission_host: str = "",
        oauth2_introspection_url: str = "",
    ) -> None:
        """``oauth2_introspection_url``: also accept AUTHENTICATE XOAUTH2 and OAUTHBEARER, the bearer token
        checked by an ``oauth2`` passdb through RFC 7662 introspection (``introspection_mode = post``;
        the user is the response's ``username``, which must be active); password logins are unchanged.
        An active token whose introspection also says ``"imap": "disabled"`` is refused like Gmail
        refuses an account with IMAP turned off: ``NO [CONTACTADMIN] <the response's "reason">`` (see
        ``_imap_refusals``).
        ``sieve``: run Pigeonhole's Sieve on LMTP delivery (scripts from ``set_sieve``), with
        ``vacation :seconds`` allowed and no minimum period; ``submission_host`` (``127.0.0.1:PORT``, an
        SMTP server such as a private Postfix) is where Sieve sends vacation replies and redirects."""
        self.certs = certs
        self.sieve = sieve
        self.submission_host = submission_host
        self.oauth2_introspection_url = oauth2_introspection_url
        self.root = Path(tempfile.mkdtemp(prefix="nimbus-dovecot-"))
        self.root.chmod(0o755)  # the auth process (user dovecot) and mail processes traverse it
        self.instance_name = f"nimbus-test-{uuid.uuid4().hex[:8]}"
        self.config_file = self.root / "dovecot.conf"
        self.users_dir = self.root / "users"
        self.log_file = self.root / "dovecot.log"
        self.home_root = self.root / "home"
        self.ports = DovecotPorts(0, 0, 0)
        self._proc: subprocess.Popen[bytes] | None = None
        self._children: set[int] = set()
        if os.geteuid() == 0:
            self.mail_user, self.mail_group = "nobody", grp.getgrgid(pwd.getpwnam("nobody").pw_gid).gr_name
        else:
            self.mail_user = pwd.getpwuid(os.geteuid()).pw_name
            self.mail_group = grp.getgrgid(os.getegid()).gr_name
        self.mail_uid = pwd.getpwnam(self.mail_user).pw_uid
        self.mail_gid = grp.getgrnam(self.mail_group).gr_gid

    # --- lifecycle

    def __enter__(self) -> Dovecot:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        if not dovecot_available():
            raise DovecotError("dovecot is not installed (Debian: apt-get install dovecot-imapd dovecot-lmtpd)")
        for subdir in ("run", "state", "certs"):
            (self.root / subdir).mkdir(exist_ok=True)
        self.home_root.mkdir(exist_ok=True)
        self.home_root.chmod(0o755)
        self.users_dir.mkdir(exist_ok=True)
        self.users_dir.chmod(0o755)
        last_error = ""
        for _ in range(3):
            self.ports = DovecotPorts(free_port(), free_port(), free_port())
            self.config_file.write_text(self._config())
            try:
                self._launch()
                return
            except DovecotError as exc:  # most likely a port taken between picking and binding
                last_error = str(exc)
                self._terminate()
        raise DovecotError(last_error)

    def _launch(self) -> None:
        stderr = (self.root / "stderr.log").open("wb")
        try:
            self._proc = subprocess.Popen(
                ["dovecot", "-F", "-c", str(self.config_file)],
                stdin=subprocess.DEVNULL,
                stdout=stderr,
                stderr=stderr,
            )
        finally:
            stderr.close()
        deadline = time.monotonic() + START_TIMEOUT
        wanted = [self.ports.imap, self.ports.imaps, self.ports.lmtp]
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise DovecotError(f"dovecot exited with {self._proc.returncode}:\n{self.diagnostics()}")
            wanted = [port for port in wanted if not _port_open(port)]
            if not wanted:
                self._children = set(_children_of(self._proc.pid))
                return
            time.sleep(0.02)
        raise DovecotError(f"dovecot did not open its ports within {START_TIMEOUT} s:\n{self.diagnostics()}")

    def stop(self) -> None:
        self._terminate()
        shutil.rmtree(self.root, ignore_errors=True)

    def _terminate(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        children = self._children | set(_children_of(proc.pid))
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                # A child still starting up (e.g. reading its config from the config process, which is
                # already gone) waits 5 s for a timeout before it notices; the master waits for it.
                for pid in children | set(_children_of(proc.pid)):
                    if _alive(pid):
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(pid, signal.SIGKILL)
                try:
                    proc.wait(timeout=3)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=5)
        deadline = time.monotonic() + 5
        while any(_alive(pid) for pid in children) and time.monotonic() < deadline:
            time.sleep(0.02)
        for pid in children:
            if _alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        self._children = set()

    def diagnostics(self) -> str:
        parts = []
        for path in (self.root / "stderr.log", self.log_file):
            if path.exists():
                parts.append(f"--- {path.name}\n{path.read_text(errors='replace')[-4000:]}")
        return "\n".join(parts)

    def log_text(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""

    # --- configuration

    def _config(self) -> str:
        root = self.root
        rootless = os.geteuid() != 0
        dh = Path("/usr/share/dovecot/dh.pem")
        lines = [
            f"instance_name = {self.instance_name}",
            f"base_dir = {root / 'run'}",
            f"state_dir = {root / 'state'}",
            f"log_path = {self.log_file}",
            f"info_log_path = {self.log_file}",
            "protocols = imap lmtp",
            # No stats process connections: a process started just before shutdown would otherwise
            # wait 5 s for the stats-writer handshake and hold the stop up.
            "stats_writer_socket_path =",
            f"listen = {HOST}",
            "ssl = yes",
            f"ssl_cert = <{self.certs.server_cert}",
            f"ssl_key = <{self.certs.server_key}",
            "ssl_min_protocol = TLSv1.2",
            *([f"ssl_dh = <{dh}"] if dh.exists() else []),
            f"local_name {UNTRUSTED_SNI} {{",
            f"  ssl_cert = <{self.certs.untrusted_cert}",
            f"  ssl_key = <{self.certs.untrusted_key}",
            "}",
            "disable_plaintext_auth = no",
            "auth_mechanisms = plain login" + (" xoauth2 oauthbearer" if self.oauth2_introspection_url else ""),
            "auth_failure_delay = 0",
            "auth_verbose = yes",
            "auth_cache_size = 0",
            "mail_location = maildir:~/Maildir",
            f"mail_uid = {self.mail_uid}",
            f"mail_gid = {self.mail_gid}",
            f"first_valid_uid = {min(self.mail_uid, 500)}",
            f"first_valid_gid = {min(self.mail_gid, 1)}",
            "mail_max_userip_connections = 100",
            "recipient_delimiter = +",
            "lmtp_save_to_detail_mailbox = yes",
            "passdb {",
            "  driver = passwd-file",
            f"  args = scheme=PLAIN username_format=%u {self.users_dir}/%u",
            *(["  mechanisms = plain login"] if self.oauth2_introspection_url else []),
            "}",
            *(
                [
                    "passdb {",
                    "  driver = oauth2",
                    "  mechanisms = xoauth2 oauthbearer",
                    f"  args = {self._oauth2_conf()}",
                    "  result_success = continue-ok",
                    "}",
                    "passdb {",
                    "  driver = passwd-file",
                    "  mechanisms = xoauth2 oauthbearer",
                    "  skip = unauthenticated",
                    f"  args = username_format=imap-%{{passdb:imap}} {self._imap_refusals()}",
                    "}",
                ]
                if self.oauth2_introspection_url
                else []
            ),
            "userdb {",
            "  driver = passwd-file",
            f"  args = username_format=%u {self.users_dir}/%u",
            "}",
            "namespace inbox {",
            "  inbox = yes",
            "  separator = /",
            *[
                line
                for name, flag in SPECIAL_FOLDERS.items()
                for line in (f"  mailbox {name} {{", "    auto = subscribe", f"    special_use = {flag}", "  }")
            ],
            "}",
            "service imap-login {",
            "  inet_listener imap {",
            f"    address = {HOST}",
            f"    port = {self.ports.imap}",
            "  }",
            "  inet_listener imaps {",
            f"    address = {HOST}",
            f"    port = {self.ports.imaps}",
            "    ssl = yes",
            "  }",
            *(["  chroot ="] if rootless else []),
            "}",
            # Dovecot's documented switch to turn the auth penalty off (the auth process can no longer
            # reach anvil's penalty socket): wrong-password tests must not slow later logins.
            "service anvil {",
            "  unix_listener anvil-auth-penalty {",
            "    mode = 0",
            "  }",
            *(["  chroot ="] if rootless else []),
            "}",
            "service lmtp {",
            "  inet_listener lmtp {",
            f"    address = {HOST}",
            f"    port = {self.ports.lmtp}",
            "  }",
            "}",
        ]
        if self.sieve:
            lines += [
                "protocol lmtp {",
                "  mail_plugins = $mail_plugins sieve",
                "}",
                "plugin {",
                # The script ``set_sieve`` writes: ~/sieve/main.sieve, active through the ~/.dovecot.sieve link.
                "  sieve = file:~/sieve;active=~/.dovecot.sieve",
                "  sieve_extensions = +vacation-seconds",
                "  sieve_vacation_min_period = 0",
                "}",
            ]
        if self.submission_host:
            lines.append(f"submission_host = {self.submission_host}")
        if rootless:  # Dovecot's documented set-up for running without root
            me = pwd.getpwuid(os.geteuid()).pw_name
            lines += [
                f"default_internal_user = {me}",
                f"default_internal_group = {self.mail_group}",
                f"default_login_user = {me}",
            ]
        return "\n".join(lines) + "\n"

    def _oauth2_conf(self) -> Path:
        path = self.root / "dovecot-oauth2.conf.ext"
        path.write_text(
            "\n".join(
                [
                    "introspection_mode = post",
                    f"introspection_url = {self.oauth2_introspection_url}",
                    "username_attribute = username",
                    "active_attribute = active",
                    "active_value = true",
                    "force_introspection = yes",
                    "timeout_msecs = 5000",
                    "pass_attrs = imap=%{oauth2:imap} reason=%{oauth2:reason}",
                ]
            )
            + "\n"
        )
        path.chmod(0o644)
        return path

    def _imap_refusals(self) -> Path:
        """The passwd-file of the passdb after ``oauth2``: it turns an introspection's ``"imap": "disabled"``
        into Dovecot's ``nologin`` refusal, whose text is the introspection's ``reason``.

        Why a second passdb: ``pass_attrs`` sets every field it names, empty or not, and Dovecot takes an
        empty ``nologin=`` as set (checked on 2.3.19: every OAuth login was then refused). So ``pass_attrs``
        only copies ``imap`` and ``reason`` (harmless when empty: the login process ignores ``imap``, and
        ``reason`` is read only with ``nologin``), the ``oauth2`` passdb continues on success
        (``continue-ok``), and this passdb, consulted only once the token is verified
        (``skip = unauthenticated``, so it compares no password), looks up ``imap-%{passdb:imap}``: the
        one entry, ``imap-disabled``, adds ``nologin``; any other user (``imap-``) is unknown here, which
        ends the chain with the ``oauth2`` passdb's success."""
        path = self.root / "imap-refusals"
        path.write_text("imap-disabled:::::::nopassword=y nologin=y\n")
        path.chmod(0o644)
        return path

    # --- users, folders, mail

    def home(self, user: str) -> Path:
        return self.home_root / user

    def add_user(self, name: str, password: str) -> None:
        """Add a user, usable at once.

        One passwd-file per user (``users/%u``): Dovecot re-stats a passwd-file at most once a second
        and re-reads it only if its mtime or size changed, so a user appended to one shared file right
        after a login stays unknown for up to a second. A new user is a new file, read at its first
        lookup. (Changing an existing user's password can take that second to be seen.)
        """
        if re.search(r"[:\s/]", name) or ":" in password or "\n" in password:
            raise ValueError("user names have no ':', '/' or white space; passwords no ':' or newline")
        home = self.home(name)
        home.mkdir(exist_ok=True)
        os.chown(home, self.mail_uid, self.mail_gid)
        home.chmod(0o700)
        entry = f"{name}:{{PLAIN}}{password}:{self.mail_uid}:{self.mail_gid}::{home}::\n"
        tmp = self.users_dir / f".{name}.tmp"
        tmp.write_text(entry)
        tmp.chmod(0o644)
        tmp.replace(self.users_dir / name)

    def set_sieve(self, user: str, script: str) -> Path:
        """Install ``script`` as the user's active Sieve script (``~/sieve/main.sieve``, linked from
        ``~/.dovecot.sieve``), owned by the mail user; the next LMTP delivery compiles and runs it.
        Needs ``Dovecot(..., sieve=True)``."""
        if not self.sieve:
            raise DovecotError("this instance runs without Sieve: Dovecot(certs, sieve=True)")
        home = self.home(user)
        if not home.exists():
            raise DovecotError(f"no such user {user!r} (add_user first)")
        scripts = home / "sieve"
        scripts.mkdir(exist_ok=True)
        os.chown(scripts, self.mail_uid, self.mail_gid)
        scripts.chmod(0o700)
        target = scripts / "main.sieve"
        tmp = scripts / ".main.sieve.tmp"
        tmp.write_text(script)
        os.chown(tmp, self.mail_uid, self.mail_gid)
        tmp.replace(target)
        # A compiled binary newer than the script (same second) would be kept: drop it.
        (scripts / "main.svbin").unlink(missing_ok=True)
        link = home / ".dovecot.sieve"
        if not link.is_symlink():
            link.unlink(missing_ok=True)
            link.symlink_to("sieve/main.sieve")
            os.lchown(link, self.mail_uid, self.mail_gid)
        return target

    def maildir_messages(self, user: str, *, folder: str = "INBOX") -> list[bytes]:
        """The raw messages in a user's maildir folder (``new/`` and ``cur/``), oldest first."""
        from nimbus_api.imap.names import encode_folder_name

        maildir = self.home(user) / "Maildir"
        if folder.upper() != "INBOX":
            maildir = maildir / ("." + encode_folder_name(folder).replace("/", "."))
        files = [path for sub in ("new", "cur") if (maildir / sub).is_dir() for path in (maildir / sub).iterdir()]
        found = []
        for path in sorted(files, key=lambda p: p.name):
            with contextlib.suppress(FileNotFoundError):  # moved from new/ to cur/ meanwhile
                found.append(path.read_bytes())
        return found

    def doveadm(self, *args: str) -> str:
        result = subprocess.run(
            ["doveadm", "-c", str(self.config_file), *args], capture_output=True, text=True, timeout=20
        )
        if result.returncode != 0:
            raise DovecotError(f"doveadm {' '.join(args)} failed ({result.returncode}): {result.stderr.strip()}")
        return result.stdout

    def create_folder(self, user: str, name: str) -> None:
        """Create a mailbox (UTF-8 name; Dovecot stores it in modified UTF-7) and subscribe to it."""
        self.doveadm("mailbox", "create", "-s", "-u", user, name)

    def deliver_lmtp(self, user: str, message: bytes, *, folder: str | None = None) -> None:
        """Deliver over LMTP like an MTA would; ``folder`` uses the ``+detail`` address (``user+Junk``)."""
        rcpt = user
        if folder is not None:
            local, _, domain = user.partition("@")
            rcpt = f"{local}+{folder}@{domain}" if domain else f"{local}+{folder}"
        with smtplib.LMTP(HOST, self.ports.lmtp, timeout=10) as lmtp:
            refused = lmtp.sendmail("sender@example.test", [rcpt], message)
        if refused:
            raise DovecotError(f"LMTP refused {rcpt}: {refused}")

    def deliver_maildir(self, user: str, message: bytes, *, folder: str = "INBOX") -> Path:
        """Drop a message file into the user's maildir (``new/``), bypassing Dovecot entirely."""
        from nimbus_api.imap.names import encode_folder_name

        maildir = self.home(user) / "Maildir"
        if folder.upper() != "INBOX":
            maildir = maildir / ("." + encode_folder_name(folder).replace("/", "."))
        for sub in ("", "cur", "new", "tmp"):
            path = maildir / sub
            if not path.exists():
                path.mkdir(parents=True)
                os.chown(path, self.mail_uid, self.mail_gid)
                path.chmod(0o700)
        name = f"{time.time_ns()}.{uuid.uuid4().hex}.nimbus-test"
        tmp = maildir / "tmp" / name
        tmp.write_bytes(message)
        os.chown(tmp, self.mail_uid, self.mail_gid)
        final = maildir / "new" / name
        tmp.replace(final)
        return final

    def processes(self) -> Iterator[int]:
        """Pids of the master and its children (for leak checks)."""
        if self._proc is not None and self._proc.poll() is None:
            yield self._proc.pid
            yield from _children_of(self._proc.pid)
