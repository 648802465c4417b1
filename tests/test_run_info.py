"""run_info: the provenance results.json records (commit, command, machine, date)."""
import subprocess


def test_git_commit_names_the_checkout_and_says_dirty(tmp_path):
    import run_info

    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "f.py").write_text("x = 1\n")
    git("add", "f.py")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one")
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=tmp_path, capture_output=True,
                          text=True).stdout.strip()
    assert run_info.git_commit(tmp_path) == head
    (tmp_path / "f.py").write_text("x = 2\n")
    assert run_info.git_commit(tmp_path) == head + "+dirty"
    assert run_info.git_commit(tmp_path.parent / "no_such_folder") is None


def test_a_run_records_the_commit_it_started_at(monkeypatch):
    """A long run whose checkout moves on (a commit while it trains) names the code it loaded at its start."""
    import run_info

    commits = iter(["aaa1111", "bbb2222"])
    monkeypatch.setattr(run_info, "git_commit", lambda folder=None: next(commits))
    monkeypatch.setattr(run_info, "_AT_START", {})
    run_info.record_start()
    assert run_info.run_info()["commit"] == "aaa1111"
