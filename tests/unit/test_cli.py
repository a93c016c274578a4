"""The canopy command: offline check with file and line, and usage errors."""

from controller import cli


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_check_accepts_the_examples(capsys):
    assert cli.main(["check", "config/examples/demo.yaml"]) == cli.EXIT_OK
    out = capsys.readouterr().out
    assert "demo.yaml: ok" in out and "2 tenants" in out


def test_check_reports_file_line_object_field_and_reason(tmp_path, capsys):
    path = write(tmp_path, "bad.yaml", """\
tenants:
  - name: acme
    domains:
      - name: prod
        subnets:
          - {name: a, cidr: 10.0.0.0/24, gateway: 10.0.0.1}
          - name: b
            cidr: 10.0.0.0/25
            gateway: 10.0.0.2
""")
    assert cli.main(["check", path]) == cli.EXIT_INVALID
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"{path}:8: subnet 'acme/b': cidr: 10.0.0.0/25 overlaps subnet 'a' (10.0.0.0/24) "
                   "in the same domain"]


def test_check_validates_files_together(tmp_path, capsys):
    a = write(tmp_path, "a.yaml", "tenants: [{name: acme, subnets: [{name: lan, vni: 5000}]}]\n")
    b = write(tmp_path, "b.yaml", "tenants: [{name: other, subnets: [{name: lan, vni: 5000}]}]\n")
    assert cli.main(["check", a]) == cli.EXIT_OK
    assert cli.main(["check", a, b]) == cli.EXIT_INVALID
    assert "VNI 5000 is already used" in capsys.readouterr().err


def test_check_reports_yaml_syntax_with_line(tmp_path, capsys):
    path = write(tmp_path, "broken.yaml", "tenants:\n  - name: a\n   bad: indent\n")
    assert cli.main(["check", path]) == cli.EXIT_INVALID
    assert capsys.readouterr().err.startswith(f"{path}:3:")


def test_check_missing_file(capsys):
    assert cli.main(["check", "/nonexistent/x.yaml"]) == cli.EXIT_INVALID
    assert "No such file" in capsys.readouterr().err


def test_run_refuses_bad_settings_before_starting(tmp_path, capsys):
    path = write(tmp_path, "s.yaml", "openflow: {port: 0}\n")
    assert cli.main(["run", "--config", path]) == cli.EXIT_USAGE
    assert f"{path}:1: openflow.port: must be between 1 and 65535" in capsys.readouterr().err


def test_apply_reports_unreachable_controller(tmp_path, capsys):
    path = write(tmp_path, "a.yaml", "tenants: [{name: acme}]\n")
    assert cli.main(["apply", path, "--url", "http://127.0.0.1:9", "--token", "x"]) == cli.EXIT_UNREACHABLE
    assert "cannot reach the controller" in capsys.readouterr().err
