from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_missing_passphrase_without_a_terminal_is_one_line_and_exit_2(tmp_path):
    env = {"PATH": str(tmp_path), "HOME": str(tmp_path)}
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "tessera-keys"),
            "init",
            "--keystore",
            str(tmp_path / "k.keystore"),
        ],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
    )
    err = result.stderr.strip()
    assert result.returncode == 2, err
    assert "\n" not in err and "Traceback" not in err
    assert "TESSERA_KEYS_PASSPHRASE" in err
