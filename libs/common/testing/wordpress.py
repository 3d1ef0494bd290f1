"""A real WordPress for tests and benchmarks, started and stopped by whoever needs it.

Debian's `wordpress` package (6.1) served by PHP's built-in server (`php -S`, with
`PHP_CLI_SERVER_WORKERS` for concurrency and OPcache on, as a production PHP has) on a free
loopback port, on a private `mariadbd` in a temporary directory on another free port. The
machine's own MariaDB, Apache or `/etc/wordpress` are never used or touched:

- Debian's `/usr/share/wordpress/wp-config.php` reads `/etc/wordpress/config-<host>.php`;
  we build a private document root instead: the top-level PHP files copied (WordPress takes
  `ABSPATH` from where `wp-load.php` really is), `wp-admin` and `wp-includes` linked, our own
  `wp-config.php` (`WP_ENVIRONMENT_TYPE=local`, so Application Passwords work over http) and
  our own `wp-content`.
- `install.php` calls `wp_install()`, sets pretty permalinks (`/%postname%/`; the router
  script sends every path that is not a file to `index.php`, so `/wp-json/` works) and
  creates an Application Password for the admin.
- A must-use plugin turns mail off (there is no MTA), adds `X-WP-Elapsed` (WordPress's own
  time for a REST request, for `bench/wordpress.py`) and registers Yoast SEO's three post
  meta fields for REST the way a site with Yoast and the IGNY8 plugin exposes them. Yoast
  itself is not packaged for Debian; a second server on the same install runs without those
  fields (`site_without_yoast`), which is what a site without Yoast looks like.

The `wordpress` fixture (session scope) gives a started `WordPressServer`. A missing package
fails the run with the package's name (`make test` installs them from
tests/system-packages.txt); nothing is skipped.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from libs.common.embedded import die_with_parent, free_port, port_open

WORDPRESS_ROOT = Path("/usr/share/wordpress")
YOAST_FIELDS = ("_yoast_wpseo_title", "_yoast_wpseo_metadesc", "_yoast_wpseo_focuskw")
ADMIN_USER = "admin"

# (what must exist, the Debian package that provides it)
_REQUIRED = (
    ("php", "php-cli"),
    ("mariadbd", "mariadb-server"),
    ("mariadb-install-db", "mariadb-server"),
    (str(WORDPRESS_ROOT / "wp-settings.php"), "wordpress"),
)

_MU_PLUGIN = r"""<?php
/* IGNY8 test harness: no mail, WordPress's own time per REST request, Yoast's meta fields. */
if (!function_exists('wp_mail')) {
    function wp_mail() { return true; }
}
add_filter('rest_post_dispatch', function ($response) {
    $elapsed = microtime(true) - $_SERVER['REQUEST_TIME_FLOAT'];
    $response->header('X-WP-Elapsed', sprintf('%.6f', $elapsed));
    return $response;
});
if (getenv('IGNY8_WP_YOAST') !== 'off') {
    add_action('init', function () {
        foreach (array(%(fields)s) as $key) {
            register_post_meta('post', $key, array(
                'type' => 'string', 'single' => true, 'show_in_rest' => true,
                'auth_callback' => function () { return current_user_can('edit_posts'); },
            ));
        }
    });
}
"""

_ROUTER = r"""<?php
/* php -S router: real files are served as they are, every other path goes to WordPress. */
$root = %(root)s;
$path = urldecode(parse_url($_SERVER['REQUEST_URI'], PHP_URL_PATH));
if ($path !== '/' && strpos($path, '..') === false && is_file($root . $path)) {
    if (substr($path, -4) !== '.php') {
        return false;
    }
    $_SERVER['SCRIPT_FILENAME'] = $root . $path;
    $_SERVER['SCRIPT_NAME'] = $path;
    $_SERVER['PHP_SELF'] = $path;
    require $root . $path;
    return;
}
$_SERVER['SCRIPT_FILENAME'] = $root . '/index.php';
$_SERVER['SCRIPT_NAME'] = '/index.php';
$_SERVER['PHP_SELF'] = '/index.php';
require $root . '/index.php';
"""

_CONFIG = r"""<?php
define('DB_NAME', 'wordpress');
define('DB_USER', 'root');
define('DB_PASSWORD', '');
define('DB_HOST', '127.0.0.1:%(db_port)d');
define('DB_CHARSET', 'utf8mb4');
define('DB_COLLATE', '');
%(keys)s
define('WP_ENVIRONMENT_TYPE', 'local');
define('WP_HOME', %(url)s);
define('WP_SITEURL', %(url)s);
define('WP_CONTENT_DIR', __DIR__ . '/wp-content');
define('DISABLE_WP_CRON', true);
define('AUTOMATIC_UPDATER_DISABLED', true);
define('WP_HTTP_BLOCK_EXTERNAL', true);
define('WP_DEBUG', false);
$table_prefix = 'wp_';
if (!defined('ABSPATH')) {
    define('ABSPATH', __DIR__ . '/');
}
require_once ABSPATH . 'wp-settings.php';
"""

_INSTALL = r"""<?php
/* Installs WordPress non-interactively and prints the admin's Application Password. */
$db = new mysqli('127.0.0.1', 'root', '', '', %(db_port)d);
$db->query('CREATE DATABASE IF NOT EXISTS wordpress CHARACTER SET utf8mb4');
$db->close();
define('WP_INSTALLING', true);
$_SERVER['HTTP_HOST'] = %(host)s;
$_SERVER['REQUEST_URI'] = '/';
require_once %(root)s . '/wp-load.php';
require_once ABSPATH . 'wp-admin/includes/upgrade.php';
wp_install('IGNY8 test site', %(user)s, 'admin@example.com', true, '', %(password)s);
update_option('permalink_structure', '/%%postname%%/');
flush_rewrite_rules();
$user = get_user_by('login', %(user)s);
list($app_password, $item) = WP_Application_Passwords::create_new_application_password(
    $user->ID, array('name' => 'igny8-tests'));
echo json_encode(array('app_password' => $app_password, 'version' => get_bloginfo('version')));
"""


class MissingSystemPackage(RuntimeError):
    """A Debian package the real WordPress needs is not installed."""


def require_system_parts() -> None:
    missing = sorted({
        package for what, package in _REQUIRED
        if not (Path(what).exists() if what.startswith("/") else shutil.which(what))
    })
    if not missing and "mysqli" not in subprocess.run(
        ["php", "-m"], capture_output=True, text=True, check=True
    ).stdout:
        missing = ["php-mysql"]
    if missing:
        raise MissingSystemPackage(
            f"the real WordPress needs the Debian package(s) {', '.join(missing)}: run "
            "tests/ensure-system-packages (`make test` does) or apt-get install them"
        )


def _php_string(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _wait(
    check: Callable[[], bool], timeout: float, what: str, proc: subprocess.Popen[bytes]
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode}")
        if check():
            return
        time.sleep(0.05)
    raise TimeoutError(f"{what} did not become ready in {timeout:.0f}s")


def _stop(proc: subprocess.Popen[bytes] | None, timeout: float = 15.0) -> None:
    """Stops a server we started in its own process group (php -S forks its workers)."""
    if proc is None or proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


class PrivateMariaDB:
    """`mariadbd` with its own data directory, socket and loopback port; root without a
    password (only this machine can reach it, for as long as the tests run)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def _user(self) -> list[str]:
        return ["--user=root"] if os.geteuid() == 0 else []

    def start(self, timeout: float = 60.0) -> None:
        data = self.root / "data"
        log = open(self.root / "mariadb.log", "ab")  # noqa: SIM115 - the child's for its lifetime
        if not data.exists():
            subprocess.run(
                ["mariadb-install-db", "--no-defaults", f"--datadir={data}",
                 "--auth-root-authentication-method=normal", "--skip-test-db",
                 "--skip-name-resolve", *self._user()],
                stdout=log, stderr=log, check=True,
            )
        self.proc = subprocess.Popen(
            ["mariadbd", "--no-defaults", f"--datadir={data}", *self._user(),
             f"--port={self.port}", "--bind-address=127.0.0.1",
             f"--socket={self.root / 'mariadb.sock'}", f"--pid-file={self.root / 'mariadb.pid'}",
             "--skip-name-resolve", "--skip-log-bin", "--innodb-buffer-pool-size=64M",
             "--innodb-flush-log-at-trx-commit=2", "--max-connections=200"],
            stdout=log, stderr=log, start_new_session=True, preexec_fn=die_with_parent(),
        )
        _wait(lambda: port_open(self.port), timeout, "mariadbd", self.proc)

    def stop(self) -> None:
        _stop(self.proc)


@dataclass(frozen=True)
class SiteAccess:
    """How a client reaches one WordPress site: the address and the admin's credentials."""

    url: str
    username: str
    app_password: str
    yoast: bool

    @property
    def rest_url(self) -> str:
        return self.url + "/wp-json/"


class WordPressServer:
    """The whole real WordPress: database, document root, install, and two `php -S` servers
    on the same install (with and without Yoast's fields). Use `start()`/`stop()` or `with`."""

    def __init__(self, root: Path | None = None, *, workers: int = 4) -> None:
        self.root = (root or Path(tempfile.mkdtemp(prefix="igny8-wordpress-"))).resolve()
        self._owns_root = root is None
        self.workers = workers
        self.docroot = self.root / "site"
        self.db = PrivateMariaDB(self.root)
        self.port = free_port()
        self.plain_port = free_port()
        self.admin_password = secrets.token_urlsafe(18)
        self.app_password = ""
        self.version = ""
        self._servers: list[subprocess.Popen[bytes]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def site(self) -> SiteAccess:
        """The site with Yoast's fields writable."""
        return SiteAccess(self.url, ADMIN_USER, self.app_password, yoast=True)

    @property
    def site_without_yoast(self) -> SiteAccess:
        """The same install served without Yoast's fields registered."""
        return SiteAccess(
            f"http://127.0.0.1:{self.plain_port}", ADMIN_USER, self.app_password, yoast=False
        )

    def __enter__(self) -> WordPressServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _build_docroot(self) -> None:
        self.docroot.mkdir(parents=True, exist_ok=True)
        for entry in WORDPRESS_ROOT.iterdir():
            target = self.docroot / entry.name
            if entry.name in ("wp-config.php", "wp-content") or target.exists():
                continue
            if entry.is_dir():
                target.symlink_to(entry)
            elif entry.suffix in (".php", ".html", ".txt"):
                shutil.copy2(entry, target)
        content = self.docroot / "wp-content"
        for sub in ("plugins", "themes", "uploads", "mu-plugins"):
            (content / sub).mkdir(parents=True, exist_ok=True)
        fields = ", ".join(_php_string(f) for f in YOAST_FIELDS)
        (content / "mu-plugins" / "igny8-test-harness.php").write_text(
            _MU_PLUGIN.replace("%(fields)s", fields)
        )
        keys = "\n".join(
            f"define('{name}', {_php_string(secrets.token_hex(32))});"
            for name in ("AUTH_KEY", "SECURE_AUTH_KEY", "LOGGED_IN_KEY", "NONCE_KEY",
                         "AUTH_SALT", "SECURE_AUTH_SALT", "LOGGED_IN_SALT", "NONCE_SALT")
        )
        (self.docroot / "wp-config.php").write_text(
            _CONFIG % {"db_port": self.db.port, "keys": keys, "url": _php_string(self.url)}
        )
        (self.root / "router.php").write_text(
            _ROUTER % {"root": _php_string(str(self.docroot))}
        )

    def _install(self) -> None:
        script = self.root / "install.php"
        script.write_text(_INSTALL % {
            "db_port": self.db.port, "host": _php_string(f"127.0.0.1:{self.port}"),
            "root": _php_string(str(self.docroot)), "user": _php_string(ADMIN_USER),
            "password": _php_string(self.admin_password),
        })
        done = subprocess.run(["php", str(script)], capture_output=True, text=True, timeout=120,
                              check=False)
        try:
            answer = json.loads(done.stdout.strip().splitlines()[-1])
        except (IndexError, ValueError):
            raise RuntimeError(
                f"WordPress install failed: {done.stdout[-2000:]} {done.stderr[-2000:]}"
            ) from None
        self.app_password = answer["app_password"]
        self.version = answer["version"]

    def _serve(self, port: int, yoast: bool) -> None:
        log = open(self.root / f"php-{port}.log", "ab")  # noqa: SIM115
        env = {**os.environ, "PHP_CLI_SERVER_WORKERS": str(self.workers),
               "IGNY8_WP_YOAST": "on" if yoast else "off"}
        php = ["php", "-d", "opcache.enable_cli=1", "-d", "memory_limit=256M",
               "-d", "upload_max_filesize=32M", "-d", "post_max_size=40M",
               "-d", "display_errors=stderr", "-S", f"127.0.0.1:{port}",
               "-t", str(self.docroot), str(self.root / "router.php")]
        # php -S forks its workers, which outlive a killed master: a shell leads the process
        # group and, told by Linux that our process died, takes the whole group with it.
        proc = subprocess.Popen(
            ["sh", "-c", "trap 'trap - TERM; kill 0' TERM; \"$@\" & wait", "php-server", *php],
            stdout=log, stderr=log, env=env, cwd=self.docroot, start_new_session=True,
            preexec_fn=die_with_parent(),
        )
        self._servers.append(proc)
        _wait(lambda: self._answers(port), 60, f"php -S on port {port}", proc)

    @staticmethod
    def _answers(port: int) -> bool:
        if not port_open(port):
            return False
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/wp-json/", timeout=5) as r:  # noqa: S310 - loopback
                return bool(r.status == 200)
        except OSError:
            return False

    def start(self) -> None:
        require_system_parts()
        self.root.mkdir(parents=True, exist_ok=True)
        self.db.start()
        try:
            self._build_docroot()
            self._install()
            self._serve(self.port, yoast=True)
            self._serve(self.plain_port, yoast=False)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        for proc in self._servers:
            _stop(proc)
        self._servers.clear()
        self.db.stop()
        if self._owns_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def php(self, code: str) -> str:
        """Runs PHP `code` inside this WordPress (after `wp-load.php`) and returns what it
        printed: for tests that check the database behind the REST API's back."""
        script = (
            "<?php $_SERVER['HTTP_HOST'] = " + _php_string(f"127.0.0.1:{self.port}") + ";\n"
            "require_once " + _php_string(str(self.docroot / "wp-load.php")) + ";\n" + code
        )
        done = subprocess.run(["php"], input=script, capture_output=True, text=True,
                              timeout=120, check=False, cwd=self.docroot)
        if done.returncode != 0:
            raise RuntimeError(f"php failed: {done.stdout[-2000:]} {done.stderr[-2000:]}")
        return done.stdout


@pytest.fixture(scope="session")
def wordpress(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WordPressServer]:
    """A real WordPress for the whole session (started on first use)."""
    server = WordPressServer(tmp_path_factory.mktemp("wordpress"))
    server.start()
    try:
        yield server
    finally:
        server.stop()
