"""`rlm report` / `doit report`: one self-contained HTML file, checked in a real headless Chromium.

The browser test skips when no Chromium is installed, unless E2E_REQUIRE_BROWSER=1 (set by .ci/run, which
installs it): then it fails instead. Screenshots go to $E2E_ARTIFACTS_DIR when set, else to the test's tmp dir.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import RUN_DIR, Repo
from test_final_report import decide, scenario

from rlm_tasks.render import markdown_safe

HOSTILE = ("# Hostile <script>document.title='pwned'</script>\n\n## What I did\n"
           "<img src=x onerror=\"document.title='img-pwned'\">\n"
           "[click](javascript:document.title='link-pwned') [tab](java\tscript:alert(1)) "
           "[ent](&#106;avascript:alert(1)) ![remote](http://example.invalid/x.png)\n\n"
           "<script>document.body.setAttribute('data-pwned', '1')</script>\n\n"
           "## Key findings\n- </script><script>document.title='json-pwned'</script>\n\n## Evidence\nx\n\n"
           "## Open questions / risks\nnone\n\n## Deferred opportunities\n- none\n\n## Contract Compliance\n- kept\n")


def browser() -> str | None:
    found = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if found is None and os.environ.get("E2E_REQUIRE_BROWSER") == "1":
        pytest.fail("E2E_REQUIRE_BROWSER=1 but no chromium on PATH (.ci/run installs the distribution's package)")
    return found


def run_browser(binary: str, page: Path, profile: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    argv = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions",
            "--enable-logging=stderr", "--v=0", f"--user-data-dir={profile}", *extra, page.as_uri()]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False,
                          env={**os.environ, "HOME": str(profile)})


def hostile_run(repo: Repo) -> None:
    scenario(repo)
    spec = json.loads(repo.spec_path.read_text())
    spec["broken"] = {"text": HOSTILE, "attempts": {"1": {"exit": 3, "report": "none"}}}
    spec["topic-1"]["text"] = HOSTILE
    repo.agent_spec(spec)
    assert repo.doit().code != 0  # broken fails its one attempt; the next run's attempt succeeds
    assert repo.doit().code == 0
    decide(repo)


def test_links_to_script_never_survive() -> None:
    for url in ("javascript:x", "JAVASCRIPT:x", " javascript:x", "java\tscript:x", "&#106;avascript:x",
                "java%09script:x", "vbscript:x", "data:text/html,x", "file:///etc/passwd", "\u200bjavascript:x"):
        assert not markdown_safe.safe_link(url), url
    for url in ("https://a.example/x", "http://a", "mailto:a@b", "#frag", "rel/path.md", "../up.md"):
        assert markdown_safe.safe_link(url), url
    out = markdown_safe.to_html(HOSTILE)
    assert "<script" not in out and "<img" not in out  # raw HTML comes out as text
    hrefs = re.findall(r'href="([^"]*)"', out)
    assert hrefs == []  # the three script links are text, not links; the image is text too
    assert "[image: remote — http://example.invalid/x.png]" in out


@pytest.mark.slow
def test_report_html_is_self_contained_and_sanitised(repo: Repo) -> None:
    hostile_run(repo)
    result = repo.rlm("report")
    assert result.code == 0, result.err
    path = repo.path(f"{RUN_DIR}/report.html")
    assert result.out == f"report: {RUN_DIR}/report.html\n"
    page = path.read_text()
    # nothing from the network: no external src/href, no CDN; one script of our own plus the JSON block
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert page.count("<script") == 2 and '<script type="application/json" id="rlm-data">' in page
    policy = re.search(r'http-equiv="Content-Security-Policy" content="([^"]*)"', page)
    assert policy is not None and html.unescape(policy.group(1)).startswith("default-src 'none'; ")
    body = page.split('<script type="application/json"')[0]
    assert "<img" not in body and "&lt;img src=x onerror=" in body  # shown as text
    hrefs = re.findall(r'href="([^"]*)"', body)
    assert all(not h.lower().startswith(("javascript", "data", "vbscript")) for h in hrefs)
    data = page.split('id="rlm-data">')[1].split("</script>")[0]
    assert "</" not in data and "<script" not in data
    # the same bytes when nothing changed (no clock in it): reviewable when committed
    assert repo.rlm("report").code == 0 and path.read_text() == page
    # doit report writes the same file
    path.unlink()
    assert repo.doit("report").code == 0
    assert path.read_text() == page


@pytest.mark.slow
def test_report_opens_in_a_real_browser_with_no_console_errors_and_no_hostile_script(repo: Repo,
                                                                                    tmp_path: Path) -> None:
    binary = browser()
    if binary is None:
        pytest.skip("no chromium on PATH (apt-get install chromium; CI sets E2E_REQUIRE_BROWSER=1)")
    hostile_run(repo)
    assert repo.rlm("report").code == 0
    # from an archive-like copy elsewhere: the file needs nothing beside it
    away = tmp_path / "elsewhere" / "report.html"
    away.parent.mkdir()
    away.write_bytes(repo.path(f"{RUN_DIR}/report.html").read_bytes())
    profile = tmp_path / "profile"
    dom = run_browser(binary, away, profile, "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    console = [line for line in dom.stderr.splitlines() if ":CONSOLE" in line]
    assert console == []
    title = re.search(r"<title>(.*?)</title>", dom.stdout)
    assert title is not None and html.unescape(title.group(1)) == "rlm report: t"
    body_tag = re.search(r"<body[^>]*>", dom.stdout)
    assert body_tag is not None and body_tag.group() == '<body data-rendered="graph timeline">'  # no data-pwned
    graph = dom.stdout.split('id="graph-svg"')[1].split("</svg>")[0]
    assert graph.count('class="node"') == 4  # topics (3 tasks), flaky, broken, v: the fan-out is one node
    assert graph.count('class="edge"') == 1
    timeline = dom.stdout.split('id="timeline-svg"')[1].split("</svg>")[0]
    assert timeline.count('class="bar') == 8  # every attempt, failed ones too
    assert timeline.count("bar o-failed") == 2
    assert timeline.count('class="marker m-retry"') == 1  # flaky's retry, from this machine's event log
    artifacts = Path(os.environ.get("E2E_ARTIFACTS_DIR") or tmp_path)
    shot = artifacts / "report.png"
    taken = run_browser(binary, away, profile, "--window-size=1400,2400", f"--screenshot={shot}")
    assert taken.returncode == 0 and shot.stat().st_size > 10_000, taken.stderr[-2000:]


def test_report_output_goes_where_asked_and_an_unwritable_place_is_one_line(repo: Repo, tmp_path: Path) -> None:
    repo.write_command([{"id": "a", "goal": "A"}])
    assert repo.doit().code == 0
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    result = repo.rlm("report", "-o", str(out_dir))
    assert (result.code, result.out) == (0, f"report: {out_dir.relative_to(repo.root)}/report.html\n")
    assert (out_dir / "report.html").read_text().startswith("<!DOCTYPE html>")
    (tmp_path / "a-file").write_text("x\n")
    missing = tmp_path / "a-file" / "r.html"  # its folder is a file
    result = repo.rlm("report", "--output", str(missing))
    assert (result.code, result.out) == (1, "")
    assert result.err == (f"rlm: cannot write the report to {missing.relative_to(repo.root)}: "
                          "File exists\n")  # mkdir of its folder
