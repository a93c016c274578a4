"""The REST API's two bearer tokens, read from what the settings name (docs/rest.md#authentication).

- The write token (``rest.token``, the content of ``rest.token_file``, or one generated once into
  ``data_dir/rest-token``): every request.
- The read-only token (``rest.read_token`` or the content of ``rest.read_token_file``; none unless configured):
  reads only, for what runs on every hypervisor (the metadata agent), so that a compromised host cannot change
  policy. It must differ from the write token: the same text would make every read-only client a writer.

``resolved`` reads them at ``canopy run`` and at each SIGHUP (controller/lifecycle.py: a refusal keeps the running
tokens); ``file_problems`` checks the same offline for ``check-settings``. Token files follow controller/secretfile.py.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import replace

from controller import secretfile
from controller.settings import Settings, SettingsError, token_path


def resolved(settings: Settings) -> Settings:
    """Settings with both tokens read: the write token as configured, from its file, or (when neither is configured)
    generated once into data_dir/rest-token with mode 0600; the read-only token from rest.read_token_file. Raises
    SettingsError naming the key when a file cannot be used or the two tokens are the same."""
    settings = _with_write_token(settings)
    if settings.rest_read_token_file:
        settings = replace(settings, rest_read_token=_read(settings, "rest.read_token_file",
                                                           settings.rest_read_token_file))
    if settings.rest_read_token is not None and settings.rest_read_token == settings.rest_token:
        raise SettingsError(_at(settings, _read_key(settings), SAME))
    return settings


SAME = ("is the write token (rest.token or rest.token_file): a read-only token must differ from it, or every "
        "client holding it may write; generate one with 'openssl rand -hex 32'")


def file_problems(settings: Settings) -> list[str]:
    """What ``canopy run`` would refuse in the token files, checked offline (check-settings), each line starting
    with where its key is set (FILE:LINE, ``Settings.where``) and the key: a configured file missing, one other users
    can read, or (when this user may read it: check-settings may run as another user than Canopy) one that holds no
    single token (secretfile.read_token); and the read-only token equal to the write token, when both can be read."""
    problems = []
    if not settings.rest_token:
        generated = settings.rest_token_file == token_path(settings.data_dir)
        problems += [p for p in [_file_problem(settings, "rest.token_file", settings.rest_token_file, generated)] if p]
    if settings.rest_read_token_file:
        problems += [p for p in [_file_problem(settings, "rest.read_token_file", settings.rest_read_token_file)] if p]
    if not problems:
        write = settings.rest_token or peek(settings.rest_token_file)
        read = settings.rest_read_token or (settings.rest_read_token_file and peek(settings.rest_read_token_file))
        if read and read == write:
            problems.append(_at(settings, _read_key(settings), SAME))
    return problems


def _with_write_token(settings: Settings) -> Settings:
    if settings.rest_token:
        return settings
    path = settings.rest_token_file
    if os.path.exists(path):
        return replace(settings, rest_token=_read(settings, "rest.token_file", path))
    if path != token_path(settings.data_dir):
        raise SettingsError(_at(settings, "rest.token_file", f"{path} does not exist"))
    os.makedirs(settings.data_dir, mode=0o750, exist_ok=True)
    token = secrets.token_hex(32)  # not urlsafe: a token starting with "-" is an option to `--token TOKEN`
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(token + "\n")
    return replace(settings, rest_token=token)


def _at(settings: Settings, key: str, problem: str) -> str:
    """``problem`` of the setting ``key``, as load's errors name it: FILE:LINE: KEY: PROBLEM."""
    return f"{settings.where(key)}: {key}: {problem}"


def _read(settings: Settings, key: str, path: str) -> str:
    """The token in the file ``path`` that the setting ``key`` names; SettingsError naming both when unusable."""
    try:
        return secretfile.read_token(key, path)
    except secretfile.Unusable as exc:
        raise SettingsError(_at(settings, key, exc.problem)) from None


def _file_problem(settings: Settings, key: str, path: str, may_be_absent: bool = False) -> str | None:
    if may_be_absent and not os.path.exists(path):
        return None
    try:
        secretfile.read_token(key, path)
    except secretfile.Unusable as exc:
        if not exc.denied:
            return _at(settings, key, exc.problem)
        try:  # not ours to open (check-settings may run as another user than Canopy): what its status tells
            problem = secretfile.file_problem(os.stat(path))
        except OSError:  # nor to look at: Canopy may
            return None
        return _at(settings, key, f"{path} {problem}") if problem else None
    return None


def peek(path: str) -> str | None:
    """The token in ``path``, or None when this user cannot read it (check-settings) or it is absent."""
    try:
        return secretfile.read_token("", path)
    except secretfile.Unusable:
        return None


def _read_key(settings: Settings) -> str:
    return "rest.read_token_file" if settings.rest_read_token_file else "rest.read_token"
