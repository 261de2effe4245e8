"""The web console (src/http/console/) in a real browser: Debian's chromium, headless, driven by
chromedriver through Selenium, against a real `berth serve` holding images pushed with skopeo.

Every test saves screenshots in its pytest tmp_path (the last page it showed as console.png).
BERTH_CONSOLE_SCREENSHOT=<file.png> makes the history test also write the README's screenshot
there (scripts/console-screenshot.sh).
"""

from __future__ import annotations

import gzip
import json
import os
import secrets
import shutil
import time
from pathlib import Path

import pytest
import requests

from clientlib import (ALL_MANIFEST_TYPES, OCI_INDEX, OCI_MANIFEST, REPORT, LayerSpec, Registry, build_layout,
                       run, sha256_bytes)

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium (scripts/install-deps.sh) drives the browser")
from selenium.common.exceptions import TimeoutException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

CHROMIUM = os.environ.get("CHROMIUM_BIN", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER_BIN", "/usr/bin/chromedriver")
API = "/apis/image.openshift.io/v1"


@pytest.fixture(autouse=True)
def _berth_only(registry):
    if not registry.is_berth:
        REPORT.append(f"not checked on {registry.impl} (berth-only): the web console ({__name__})")
        pytest.skip("the console is berth's")


# ---- images and pushes --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def layout(tmp_path_factory):
    """Small OCI images of distinct, known sizes (random content, so distinct digests)."""
    path = tmp_path_factory.mktemp("console-images") / "layout"
    sizes = {"small": 2_000, "medium": 40_000, "large": 160_000, "v1": 3_000, "v2": 5_000, "v3": 7_000}
    return build_layout(path, {ref: [LayerSpec(files={"etc/ref": ref.encode()}, random_files={"data": n})]
                               for ref, n in sizes.items()})


def push(host: str, layout, ref: str, dst: str, creds: str | None = None) -> str:
    """skopeo copy oci:<layout>:<ref> docker://<host>/<dst>; the digest the registry serves for dst."""
    auth = ["--dest-creds", creds] if creds else []
    run(["skopeo", "copy", "--quiet", "--dest-tls-verify=false", *auth, f"oci:{layout.path}:{ref}",
         f"docker://{host}/{dst}"])
    return served_digest(host, dst, creds)


def served_digest(host: str, ref: str, creds: str | None = None) -> str:
    auth = ["--creds", creds] if creds else []
    raw = run(["skopeo", "inspect", "--raw", "--tls-verify=false", *auth, f"docker://{host}/{ref}"]).stdout
    return sha256_bytes(raw.encode())


def manifest_bytes(host: str, repo: str, ref: str) -> bytes:
    r = requests.get(f"http://{host}/v2/{repo}/manifests/{ref}", headers={"Accept": ", ".join(ALL_MANIFEST_TYPES)},
                     timeout=10)
    assert r.status_code == 200, r.text
    return r.content


def put_manifest(host: str, repo: str, ref: str, manifest: dict, media_type: str) -> str:
    body = json.dumps(manifest).encode()
    r = requests.put(f"http://{host}/v2/{repo}/manifests/{ref}", data=body, headers={"Content-Type": media_type},
                     timeout=10)
    assert r.status_code == 201, r.text
    return sha256_bytes(body)


def push_referrer(host: str, repo: str, subject: str) -> str:
    """An SBOM-like artifact whose subject is `subject` (pushed by digest, as oras attach does)."""
    empty = b"{}"
    d = sha256_bytes(empty)
    r = requests.post(f"http://{host}/v2/{repo}/blobs/uploads/?digest={d}", data=empty,
                      headers={"Content-Type": "application/octet-stream"}, timeout=10)
    assert r.status_code == 201, r.text
    desc = {"mediaType": "application/vnd.oci.empty.v1+json", "digest": d, "size": 2}
    size = len(manifest_bytes(host, repo, subject))
    m = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": "application/vnd.example.sbom+json",
         "config": desc, "layers": [desc], "subject": {"mediaType": OCI_MANIFEST, "digest": subject, "size": size}}
    return put_manifest(host, repo, sha256_bytes(json.dumps(m).encode()), m, OCI_MANIFEST)


# ---- the browser --------------------------------------------------------------------------------

class Browser:
    """One headless chromium; screenshots go to the test's tmp_path."""

    def __init__(self, base: str, out: Path, width: int = 1280, height: int = 900):
        if not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)):
            raise AssertionError(f"{CHROMIUM} and {CHROMEDRIVER} are needed (apt-get install chromium "
                                 "chromium-driver, or scripts/install-deps.sh)")
        from selenium.webdriver.chrome.options import Options
        from selenium.webdriver.chrome.service import Service
        opts = Options()
        opts.binary_location = CHROMIUM
        for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                  f"--window-size={width},{height}", "--lang=en-US"):
            opts.add_argument(a)
        opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        self.driver = webdriver.Chrome(service=Service(CHROMEDRIVER, log_output=str(out / "chromedriver.log")),
                                       options=opts)
        self.base = base
        self.out = out

    def open(self, fragment: str = "/"):
        self.driver.get(f"{self.base}/console/#{fragment}")

    def wait(self, cond, what: str, timeout: float = 10):
        try:
            return WebDriverWait(self.driver, timeout, poll_frequency=0.05).until(lambda d: cond())
        except TimeoutException:
            self.shot("timeout")
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; at {self.driver.current_url}\n"
                                 f"page text:\n{self.text()[:3000]}\nconsole log:\n{self.console_log()}") from None

    def find(self, css: str):
        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def one(self, css: str, timeout: float = 10):
        return self.wait(lambda: (self.find(css) or [None])[0], f"an element {css!r}", timeout)

    def text(self) -> str:
        try:
            return self.driver.find_element(By.TAG_NAME, "body").text
        except Exception:
            return ""

    def column(self, table: str, n: int) -> list:
        """The texts of a table column, read in one script (the page redraws tables live)."""
        return self.driver.execute_script(
            "return [...document.querySelectorAll(arguments[0])].map(e => e.textContent.trim())",
            f"#{table} tbody tr > :nth-child({n})")

    def attrs(self, css: str, name: str) -> list:
        return self.driver.execute_script(
            "return [...document.querySelectorAll(arguments[0])].map(e => e.getAttribute(arguments[1]))",
            css, name)

    def click(self, css: str):
        """Clicks an element, finding it again if a live redraw replaced it meanwhile."""
        from selenium.common.exceptions import StaleElementReferenceException
        for _ in range(5):
            try:
                self.one(css).click()
                return
            except StaleElementReferenceException:
                time.sleep(0.1)
        raise AssertionError(f"{css!r} kept being replaced")

    def session(self, key: str):
        return self.driver.execute_script("return sessionStorage.getItem(arguments[0])", key)

    def console_log(self) -> str:
        try:
            return "\n".join(f"{e['level']}: {e['message']}" for e in self.driver.get_log("browser"))
        except Exception as e:  # not every driver keeps it
            return f"(no browser log: {e})"

    def shot(self, name: str) -> Path:
        path = self.out / f"{name}.png"
        self.driver.save_screenshot(str(path))
        return path

    def quit(self):
        try:
            self.shot("console")
        finally:
            self.driver.quit()


@pytest.fixture
def browser(registry, tmp_path):
    b = Browser(registry.url(""), tmp_path)
    yield b
    b.quit()


def no_csp_violations(b: Browser):
    log = b.console_log()
    assert "Content Security Policy" not in log and "Refused to" not in log, log


# ---- anonymous server: browse, sort, history, rollback, delete, import, live --------------------

def test_namespaces_and_streams_sort(registry, browser, layout):
    ns = "console-sort"
    push(registry.host, layout, "small", f"{ns}/alpha:one")
    for t in ("one", "two", "three"):
        push(registry.host, layout, "medium", f"{ns}/beta:{t}")
    push(registry.host, layout, "large", f"{ns}/gamma:one")
    time.sleep(1.1)  # tag events record whole seconds
    push(registry.host, layout, "small", f"{ns}/gamma:two")  # last update: gamma

    b = browser
    b.open("/")
    b.one(f'#namespaces a[href="#/ns/{ns}"]').click()
    b.wait(lambda: b.column("streams", 1) == ["alpha", "beta", "gamma"], "streams sorted by name")
    assert b.column("streams", 2) == ["1", "3", "2"]
    b.one("#streams[data-sizes=loaded]")

    b.click("#sort-tags")
    assert b.column("streams", 1) == ["beta", "gamma", "alpha"]
    assert b.attrs("#streams th[aria-sort=descending] button", "id") == ["sort-tags"]
    b.click("#sort-tags")
    assert b.column("streams", 1) == ["alpha", "gamma", "beta"]
    b.click("#sort-updated")
    assert b.column("streams", 1)[0] == "gamma"
    b.click("#sort-size")
    # gamma holds large + small, beta medium (its three tags are one image), alpha small.
    assert b.column("streams", 1) == ["gamma", "beta", "alpha"], b.column("streams", 4)
    sizes = [int(v) for v in b.attrs("#streams tbody td[data-size]", "data-size")]
    assert sizes == sorted(sizes, reverse=True) and sizes[-1] > 2_000, sizes
    # Keyboard: the sort buttons are buttons (Enter sorts) and keep focus.
    from selenium.webdriver.common.keys import Keys
    b.one("#sort-name").send_keys(Keys.ENTER)
    assert b.column("streams", 1) == ["alpha", "beta", "gamma"]
    assert b.driver.switch_to.active_element.get_attribute("id") == "sort-name"
    b.shot("streams-sorted")
    no_csp_violations(b)


def test_stream_tag_history_and_rollback(registry, browser, layout):
    ns = "console-hist"
    first = push(registry.host, layout, "v1", f"{ns}/app:latest")
    second = push(registry.host, layout, "v2", f"{ns}/app:latest")
    third = push(registry.host, layout, "v3", f"{ns}/app:latest")
    push(registry.host, layout, "v1", f"{ns}/app:stable")
    berth = [os.environ.get("BERTH_BIN") or str(Path(__file__).resolve().parents[2] / "target/debug/berth"),
             "--server", registry.url(""), "-n", ns]
    run(berth + ["tag", "--alias", "app:latest", "app:edge"])

    b = browser
    b.open(f"/ns/{ns}/app")
    b.one('#tags tr[data-tag="edge"]')
    assert "tracks latest" in b.one('#tags tr[data-tag="edge"]').text
    assert "tracked by edge" in b.one('#tags tr[data-tag="latest"]').text
    b.click('#tags tr[data-tag="latest"] th a')

    b.wait(lambda: len(b.find("#history tbody tr")) == 3, "three history entries")
    assert "tracked by edge" in b.text()
    images = b.attrs("#history tbody tr", "data-image")
    assert images == [third, second, first], "newest first"
    b.wait(lambda: "…" not in b.one("#history").text, "sizes and platforms")
    assert all("linux/amd64" in r.text for r in b.find("#history tbody tr"))
    b.shot("history")
    if os.environ.get("BERTH_CONSOLE_SCREENSHOT"):
        # The README's picture (scripts/console-screenshot.sh): the page at a size that fits it.
        b.driver.set_window_size(1100, 640)
        b.wait(lambda: b.driver.execute_script("return window.innerWidth") <= 1100, "the smaller window")
        shutil.copyfile(b.shot("history-readme"), os.environ["BERTH_CONSOLE_SCREENSHOT"])
        b.driver.set_window_size(1280, 900)

    # Roll back to the oldest entry: skopeo then pulls it by tag.
    b.click("#rollback-2")
    b.wait(lambda: b.find("#notice") and "now points to" in b.find("#notice")[0].text, "the rollback's notice")
    b.wait(lambda: b.attrs("#history tbody tr", "data-image")[:1] == [first],
           "the rolled-back image on top")
    assert served_digest(registry.host, f"{ns}/app:latest") == first
    b.shot("rolled-back")
    no_csp_violations(b)


def test_image_page(registry, browser, layout):
    ns = "console-image"
    digest = push(registry.host, layout, "medium", f"{ns}/web:1.0")
    b = browser
    b.open(f"/ns/{ns}/web/image/{digest}?tag=1.0")
    b.one("#layers tbody tr")
    assert b.one("#image-digest").text == digest
    assert "berth tests: layer 0" in b.one("#layers").text
    assert "berth.test.ref" in b.one("#labels").text
    assert '["/bin/sh"]' in b.one("#config").text
    assert b.one("#pull-digest-docker").get_attribute("value") == f"docker pull {registry.host}/{ns}/web@{digest}"
    assert b.one("#pull-tag-podman").get_attribute("value") == f"podman pull {registry.host}/{ns}/web:1.0"
    assert b.one("#pull-tag-skopeo").get_attribute("value").startswith(f"skopeo copy docker://{registry.host}/{ns}/web:1.0 ")
    assert b.one("#no-referrers")
    b.find("button.copy")[0].click()
    b.wait(lambda: "Copied: docker pull" in b.one("#live").text, "the copy announcement")
    b.shot("image")
    # A narrow screen: the page still lays out (tables scroll inside themselves).
    b.driver.set_window_size(390, 844)
    width = b.driver.execute_script("return document.documentElement.scrollWidth")
    assert width <= 400, f"page is {width}px wide on a 390px screen"
    b.shot("image-narrow")
    no_csp_violations(b)

    # A referrer (an SBOM) shows on its subject's page. (Pushed by digest it changes no image
    # stream, so no watch event announces it: the page shows it when opened again.)
    sbom = push_referrer(registry.host, f"{ns}/web", digest)
    b.driver.refresh()
    b.one("#referrers")
    assert "application/vnd.example.sbom+json" in b.one("#referrers").text
    assert sbom.split(":")[1][:12] in b.one("#referrers").text

    # A manifest list: its platforms, each a link to that platform's image.
    arm_layout = build_layout(layout.path.parent / "arm", {"arm": [LayerSpec(random_files={"data": 9_000})]},
                              arch="arm64")
    arm = push(registry.host, arm_layout, "arm", f"{ns}/web:arm")
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": d, "size": len(manifest_bytes(registry.host, f"{ns}/web", d)),
         "platform": {"os": "linux", "architecture": a}} for d, a in ((digest, "amd64"), (arm, "arm64"))]}
    multi = put_manifest(registry.host, f"{ns}/web", "multi", index, OCI_INDEX)
    b.driver.set_window_size(1280, 900)
    b.open(f"/ns/{ns}/web/image/{multi}?tag=multi")
    b.one("#platforms tbody tr")
    assert b.column("platforms", 1) == ["linux/amd64", "linux/arm64"]
    b.shot("index")
    b.click(f'#platforms a[href$="{arm}"]')
    b.wait(lambda: b.find("#image-digest") and b.find("#image-digest")[0].text == arm, "the arm64 image's page")
    assert "linux/arm64" in b.one("#config").text
    b.open(f"/ns/{ns}/web/tag/multi")
    b.wait(lambda: "linux/amd64, linux/arm64" in b.one("#history").text, "the list's platforms in the history")


def push_raw_image(host: str, repo: str, tag: str, config: dict) -> str:
    """An image with the given config pushed over plain HTTP (one empty-tar layer)."""
    layer = gzip.compress(b"\0" * 1024, mtime=0)
    config = dict(config, rootfs={"type": "layers", "diff_ids": [sha256_bytes(b"\0" * 1024)]})
    cfg = json.dumps(config).encode()
    for blob in (layer, cfg):
        r = requests.post(f"http://{host}/v2/{repo}/blobs/uploads/?digest={sha256_bytes(blob)}", data=blob,
                          headers={"Content-Type": "application/octet-stream"}, timeout=10)
        assert r.status_code == 201, r.text
    m = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
         "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256_bytes(cfg),
                    "size": len(cfg)},
         "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": sha256_bytes(layer),
                     "size": len(layer)}]}
    return put_manifest(host, repo, tag, m, OCI_MANIFEST)


def test_hostile_metadata_stays_text(registry, browser):
    """Image metadata is the pusher's to choose: markup in it is shown as text, never run."""
    ns = "console-xss"
    evil = '<img src=x id=pwned onerror="document.title=\'pwned\'"><script>document.title="pwned"</script>'
    digest = push_raw_image(registry.host, f"{ns}/app", "v1", {
        "architecture": "amd64", "os": "linux",
        "config": {"Labels": {"evil": evil}, "Env": [f"X={evil}"], "User": evil, "Cmd": [evil]},
        "history": [{"created_by": evil}],
    })
    b = browser
    b.open(f"/ns/{ns}/app/image/{digest}?tag=v1")
    b.one("#layers tbody tr")
    assert evil in b.one("#labels").text and evil in b.one("#layers").text
    assert not b.find("#pwned") and not b.find("main script")
    time.sleep(0.3)
    assert b.driver.title != "pwned"
    b.shot("hostile-metadata")
    no_csp_violations(b)


def test_delete_tag(registry, browser, layout):
    ns = "console-del"
    push(registry.host, layout, "v1", f"{ns}/app:old")
    push(registry.host, layout, "v2", f"{ns}/app:keep")
    b = browser
    b.open(f"/ns/{ns}/app/tag/old")
    b.click("#delete-tag")
    assert "Delete tag app:old" in b.one("#delete-question").text
    b.click("#delete-cancel")
    b.click("#delete-tag")
    b.click("#delete-confirm")
    b.wait(lambda: b.find("#notice") and "Deleted tag app:old" in b.find("#notice")[0].text, "the delete notice")
    assert b.driver.current_url.endswith(f"#/ns/{ns}/app")
    assert b.attrs("#tags tbody tr", "data-tag") == ["keep"]
    tags = json.loads(run(["skopeo", "list-tags", "--tls-verify=false", f"docker://{registry.host}/{ns}/app"]).stdout)
    assert tags["Tags"] == ["keep"], tags
    b.shot("deleted")


def test_import_image(registry, browser, layout):
    src = push(registry.host, layout, "large", "console-src/upstream:v1")
    ns = "console-imp"
    b = browser
    b.open(f"/import/{ns}")
    b.one("#import-from").send_keys(f"{registry.host}/console-src/upstream:v1")
    b.one("#import-stream").send_keys("mirror")
    tag = b.one("#import-tag")
    tag.clear()
    tag.send_keys("v1")
    b.click("#import-insecure")  # the registry under test speaks plain HTTP
    b.click("#import-scheduled")
    b.click("#import-submit")
    ok = b.one("#import-ok, #import-failed", timeout=30)
    assert ok.get_attribute("id") == "import-ok", ok.text
    assert src.split(":")[1][:12] in ok.text
    b.shot("import-result")
    b.click("#import-open")
    b.wait(lambda: b.attrs("#history tbody tr", "data-image") == [src], "the imported history")
    assert "imports" in b.text() and "imported" in b.text()
    stream = requests.get(registry.url(f"{API}/namespaces/{ns}/imagestreams/mirror"), timeout=10).json()
    assert stream["status"]["tags"][0]["items"][0]["image"] == src
    # The stream page: the source, its status and the scheduled flag.
    b.click(f'#crumbs a[href="#/ns/{ns}/mirror"]')
    row = b.one('#tags tr[data-tag="v1"]')
    assert f"imports {registry.host}/console-src/upstream:v1" in row.text and "imported" in row.text, row.text
    assert "scheduled" in row.text, row.text
    # A failing import shows its reason.
    b.open(f"/import/{ns}")
    b.one("#import-from").send_keys(f"{registry.host}/console-src/absent:v1")
    b.one("#import-stream").send_keys("broken")
    b.click("#import-insecure")
    b.click("#import-submit")
    failed = b.one("#import-ok, #import-failed", timeout=30)
    assert failed.get_attribute("id") == "import-failed" and "Import failed" in failed.text, failed.text
    b.shot("import-failed")
    b.open(f"/ns/{ns}/broken")
    row = b.one('#tags tr[data-tag="latest"]')
    assert "import failed" in row.text, row.text
    b.shot("import-failed-stream")


def test_live_update_after_push(registry, browser, layout):
    ns = "console-live"
    push(registry.host, layout, "v1", f"{ns}/app:v1")
    b = browser
    b.open(f"/ns/{ns}/app")
    b.one('#tags tr[data-tag="v1"]')
    time.sleep(0.5)  # the watch is open
    digest = push(registry.host, layout, "v2", f"{ns}/app:v2")
    pushed = time.monotonic()
    b.wait(lambda: b.find('#tags tr[data-tag="v2"]'), "the pushed tag on the open page", timeout=3)
    REPORT.append(f"console: stream page showed a skopeo push after {time.monotonic() - pushed:.2f} s")
    assert digest.split(":")[1][:12] in b.one('#tags tr[data-tag="v2"]').text
    # And the namespace list of streams follows a new stream.
    b.open(f"/ns/{ns}")
    b.one('#streams tr[data-stream="app"]')
    time.sleep(0.5)
    push(registry.host, layout, "v3", f"{ns}/other:v1")
    pushed = time.monotonic()
    b.wait(lambda: b.find('#streams tr[data-stream="other"]'), "the new stream in the list", timeout=3)
    REPORT.append(f"console: stream list showed a new stream after {time.monotonic() - pushed:.2f} s")
    b.shot("live")


def test_assets_headers_and_not_found(registry):
    r = requests.get(registry.url("/"), timeout=10)
    assert r.status_code == 200 and "text/html" in r.headers["Content-Type"]
    assert "default-src 'self'" in r.headers["Content-Security-Policy"]
    assert r.headers["X-Frame-Options"] == "DENY"
    assert requests.get(registry.url("/console/nope.js"), timeout=10).status_code == 404
    assert requests.post(registry.url("/console/app.js"), timeout=10).status_code == 405


# ---- with authentication: log in and out, and what a view user sees -----------------------------

@pytest.fixture(scope="module")
def auth_registry(tmp_path_factory, report, layout):
    work = tmp_path_factory.mktemp("registry-console-auth")
    admin_pw = "admin-" + secrets.token_hex(8)
    reg = Registry("berth", work, env={"BERTH_ADMIN_PASSWORD": admin_pw}).start()
    try:
        users = {"editor": ("edit", "ed-" + secrets.token_hex(6)), "viewer": ("view", "vi-" + secrets.token_hex(6))}
        for name, (role, pw) in users.items():
            r = requests.post(reg.url("/auth/v1/users"), json={"name": name, "password": pw},
                              auth=("admin", admin_pw), timeout=30)
            assert r.status_code == 201, r.text
            r = requests.put(reg.url(f"/auth/v1/namespaces/team/rolebindings/{name}"), json={"role": role},
                             auth=("admin", admin_pw), timeout=30)
            assert r.status_code == 200, r.text
        creds = f"admin:{admin_pw}"
        old = push(reg.host, layout, "v1", "team/app:latest", creds)
        new = push(reg.host, layout, "v2", "team/app:latest", creds)
        yield {"reg": reg, "admin_pw": admin_pw, "users": users, "old": old, "new": new}
    finally:
        code = reg.stop()
        report.append(f"console auth registry: berth pid {reg.pid}, exit code {code}, log {reg.log_path}")
        reg.assert_clean_exit(code)


@pytest.fixture
def auth_browser(auth_registry, tmp_path):
    b = Browser(auth_registry["reg"].url(""), tmp_path)
    yield b
    b.quit()


def log_in(b: Browser, user: str, password: str):
    b.one("#login-user").send_keys(user)
    b.one("#login-password").send_keys(password)
    b.click("#login-submit")


def test_login_logout(auth_registry, auth_browser):
    reg, (_, pw) = auth_registry["reg"], auth_registry["users"]["editor"]
    b = auth_browser
    b.open("/ns/team/app")
    b.wait(lambda: b.driver.current_url.endswith("#/login"), "the login page")
    assert b.driver.switch_to.active_element.get_attribute("id") == "login-user"
    log_in(b, "editor", "wrong")
    assert "Wrong user name or password" in b.one("#login-error:not([hidden])").text
    assert b.one("#login-password").get_attribute("value") == ""
    assert b.driver.switch_to.active_element.get_attribute("id") == "login-password"
    b.one("#login-user").clear()
    log_in(b, "editor", pw)
    b.wait(lambda: b.find("#whoami") and b.find("#whoami")[0].text == "editor", "signed in as editor")
    # Back to the page first asked for.
    b.one('#tags tr[data-tag="latest"]')
    token = b.session("berth.console.token")
    assert token and token.startswith("berth_"), "an access token kept in sessionStorage"
    b.click('a[href="#/"]')
    b.one('#namespaces a[href="#/ns/team"]')
    b.open("/ns/team/app/tag/latest")
    b.one("#rollback-1")
    b.one("#delete-tag")
    assert token not in b.driver.current_url
    b.shot("signed-in")

    b.click("#logout")
    b.wait(lambda: b.driver.current_url.endswith("#/login") and b.find("#login-user"), "the login page again")
    assert b.session("berth.console.token") is None
    # The token was revoked on the server, as `berth logout` does.
    r = requests.get(reg.url("/auth/v1/whoami"), headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert r.status_code == 401, r.text
    # Tokens travel in headers only: never in a URL the server logged.
    assert token not in reg.log_text()
    b.shot("signed-out")


def test_view_user_sees_no_controls_and_is_refused(auth_registry, auth_browser):
    reg, (_, pw) = auth_registry["reg"], auth_registry["users"]["viewer"]
    old, new = auth_registry["old"], auth_registry["new"]
    b = auth_browser
    b.open("/")
    log_in(b, "viewer", pw)
    b.click('#namespaces a[href="#/ns/team"]')
    b.one('#streams tr[data-stream="app"]')
    assert not b.find("#import-link")
    b.open("/ns/team/app/tag/latest")
    b.wait(lambda: len(b.find("#history tbody tr")) == 2, "the history")
    assert not b.find("button.rollback") and not b.find("#delete-tag"), "no rollback or delete for view"
    b.shot("viewer-history")

    # The calls the console would make, made anyway with the viewer's token: refused.
    token = b.session("berth.console.token")
    hdrs = {"Authorization": f"Bearer {token}"}
    body = {"kind": "ImageStreamTag", "apiVersion": "image.openshift.io/v1",
            "metadata": {"name": "app:latest", "namespace": "team"},
            "tag": {"name": "latest", "from": {"kind": "ImageStreamImage", "name": f"app@{old}"},
                    "referencePolicy": {"type": "Source"}}}
    r = requests.put(reg.url(f"{API}/namespaces/team/imagestreamtags/app:latest"), json=body, headers=hdrs, timeout=10)
    assert r.status_code == 403, r.text
    r = requests.delete(reg.url(f"{API}/namespaces/team/imagestreamtags/app:latest"), headers=hdrs, timeout=10)
    assert r.status_code == 403, r.text
    imp = {"kind": "ImageStreamImport", "apiVersion": "image.openshift.io/v1",
           "metadata": {"name": "app", "namespace": "team"},
           "spec": {"import": True, "images": [{"from": {"kind": "DockerImage", "name": f"{reg.host}/team/app:latest"},
                                                "to": {"name": "copy"}}]}}
    r = requests.post(reg.url(f"{API}/namespaces/team/imagestreamimports"), json=imp, headers=hdrs, timeout=10)
    assert r.status_code == 403, r.text
    # The same from inside the page, with the headers the console sends.
    status = b.driver.execute_async_script("""
        const [path, body, done] = arguments;
        const h = {"Authorization": "Bearer " + sessionStorage.getItem("berth.console.token"),
                   "X-Requested-With": "berth-console", "Content-Type": "application/json"};
        Promise.all([fetch(path, {method: "PUT", headers: h, body: JSON.stringify(body)}),
                     fetch(path, {method: "DELETE", headers: h})])
          .then(rs => done(rs.map(r => r.status)), e => done(String(e)));
    """, f"{API}/namespaces/team/imagestreamtags/app:latest", body)
    assert status == [403, 403], status
    # Nothing moved.
    creds = f"admin:{auth_registry['admin_pw']}"
    assert served_digest(reg.host, "team/app:latest", creds) == new
