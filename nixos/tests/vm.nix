# NixOS VM test of services.vigil (nixosTest style). Runs on any machine with Nix and KVM:
#   nix build .#checks.x86_64-linux.vm      (or: nix flake check)
# It cannot run in this repository's CI, which has no Nix store (tests/check-nix.sh only
# parses and evaluates the .nix files there).
#
# The machine boots the module with the units from systemd/; the test makes an INSECURE
# dev keystore, starts the signer's socket and the orchestrator, waits for both units
# (Type=notify: "active" means READY=1 was sent), checks the signer's confinement from
# inside its own namespaces and /proc, and waits for one paper decision.
{ pkgs, vigilModule }:

pkgs.testers.runNixOSTest {
  name = "vigil";

  nodes.machine = { config, lib, pkgs, ... }: {
    imports = [ vigilModule ];

    services.vigil = {
      enable = true;
      operators = [ 1 ];
      chainRpc = { };
      agents = [
        {
          id = "trader";
          provider = "scripted";
          model = "scripted";
          temperature = 0.1;
          max_tokens = 400;
          schedule_secs = 3600;
          mode = "paper";
          system_prompt = "You pay the dev peer small fees.";
          risk = {
            allowed_actions = [ "transfer" "hold" ];
            max_fraction_per_tx_bps = 1000;
            # Replaced by the dev peer's address once dev-init made it (testScript).
            peers = [ { label = "dev-peer"; address = "DEVPEER"; } ];
          };
        }
      ];
      settings = {
        daily_llm_usd_cap_micros = 1000000;
        providers.scripted = {
          kind = "scripted";
          script = "/etc/vigil/scripted-replies.toml";
          prices = { prompt_micros_per_mtok = 0; completion_micros_per_mtok = 0; };
        };
        # No Telegram in the VM: the Bot API URL is a closed loopback port.
        telegram.api_url = "http://127.0.0.1:9";
      };
    };
    # A real file (not a store link), so the test can put the dev peer's address in.
    environment.etc."vigil/orchestrator.toml".mode = "0644";
    environment.etc."vigil/scripted-replies.toml".text = ''
      [agents.trader]
      replies = ['{"action":"transfer","asset":"SOL","to":"dev-peer","amount":"100000000","confidence":0.8,"reasoning":"Pay the dev peer the small agreed fee for this round."}']
    '';

    # The test starts the daemons itself, after dev-init; plain (unencrypted) credential
    # files stand in for the TPM-sealed ones.
    systemd.sockets.vigil-signer.wantedBy = lib.mkForce [ ];
    systemd.services.vigil-signer.wantedBy = lib.mkForce [ ];
    systemd.services.vigil-orchestrator.wantedBy = lib.mkForce [ ];
    systemd.services.vigil-signer.serviceConfig.LoadCredentialEncrypted = lib.mkForce [ "" ];
    systemd.services.vigil-signer.serviceConfig.LoadCredential =
      [ "vigil-keystore-passphrase:/etc/credstore/vigil-keystore-passphrase" ];
    systemd.services.vigil-orchestrator.serviceConfig.LoadCredentialEncrypted = lib.mkForce [ "" ];
    systemd.services.vigil-orchestrator.serviceConfig.LoadCredential =
      [ "vigil-telegram-bot-token:/etc/credstore/vigil-telegram-bot-token" ];
    systemd.services.vigil-approver.wantedBy = lib.mkForce [ ];
    systemd.services.vigil-approver.serviceConfig.LoadCredentialEncrypted = lib.mkForce [ "" ];
    systemd.services.vigil-approver.serviceConfig.LoadCredential =
      [ "vigil-approver-bot-token:/etc/credstore/vigil-approver-bot-token" ];

    environment.systemPackages = [ pkgs.sqlite pkgs.iproute2 pkgs.util-linux pkgs.jq ];
    virtualisation.memorySize = 1024;
  };

  testScript = ''
    import json

    machine.wait_for_unit("multi-user.target")

    with subtest("dev keystore and credentials"):
        out = machine.succeed(
            "vigil-signer dev-init --agents trader --state-dir /var/lib/vigil-signer"
        )
        init = json.loads(out)
        machine.succeed(
            "chown -R vigil-signer:vigil-signer /var/lib/vigil-signer",
            "chmod 0700 /var/lib/vigil-signer",
            "install -D -m 0400 /var/lib/vigil-signer/dev/passphrase /etc/credstore/vigil-keystore-passphrase",
            "install -D -m 0400 /dev/null /etc/credstore/vigil-telegram-bot-token",
            "printf 1:test | install -D -m 0400 /dev/stdin /etc/credstore/vigil-approver-bot-token",
            f"sed -i 's/DEVPEER/{init['dev_peer']}/' /etc/vigil/orchestrator.toml",
        )

    with subtest("the units start and report ready"):
        machine.succeed("systemctl start vigil-signer.socket vigil-orchestrator.service vigil-approver.service")
        machine.wait_for_unit("vigil-signer.service")
        machine.wait_for_unit("vigil-orchestrator.service")
        machine.wait_for_unit("vigil-approver.service")
        machine.succeed("test -S /run/vigil/signer.sock")
        machine.succeed("stat -c '%a %U %G' /run/vigil/signer.sock | grep -qx '660 vigil-signer vigil'")

    signer_pid = machine.succeed("systemctl show -p MainPID --value vigil-signer").strip()

    with subtest("the signer is confined: seccomp, no new privileges, its own user"):
        status = machine.succeed(f"cat /proc/{signer_pid}/status")
        assert "Seccomp:\t2" in status, status
        assert "NoNewPrivs:\t1" in status, status
        uid = machine.succeed("id -u vigil-signer").strip()
        assert any(l.split()[1] == uid for l in status.splitlines() if l.startswith("Uid:")), status

    with subtest("the approver is confined and runs as its own user"):
        approver_pid = machine.succeed("systemctl show -p MainPID --value vigil-approver").strip()
        status = machine.succeed(f"cat /proc/{approver_pid}/status")
        assert "Seccomp:\t2" in status, status
        assert "NoNewPrivs:\t1" in status, status
        uid = machine.succeed("id -u vigil-approver").strip()
        assert any(l.split()[1] == uid for l in status.splitlines() if l.startswith("Uid:")), status

    with subtest("the signer has no network: only lo in its namespace, nothing reachable"):
        links = machine.succeed(f"nsenter -t {signer_pid} -n ip -o link show")
        assert [l.split(":")[1].strip() for l in links.splitlines()] == ["lo"], links
        machine.fail(f"nsenter -t {signer_pid} -n ping -c 1 -W 1 10.0.2.2")
        machine.fail(f"nsenter -t {signer_pid} -n ip route get 1.1.1.1")

    with subtest("nobody but group vigil may connect to the signer"):
        machine.succeed("useradd -m mallory")
        machine.fail("su mallory -s /bin/sh -c 'test -w /run/vigil/signer.sock'")

    with subtest("one paper decision goes through the signer"):
        machine.wait_until_succeeds(
            "sqlite3 /var/lib/vigil/orchestrator.sqlite3 "
            "\"SELECT outcome FROM decisions WHERE agent = 'trader'\" | grep -qx paper_filled",
            timeout=60,
        )
        machine.succeed("vigil-signer audit-verify --state-dir /var/lib/vigil-signer")
  '';
}
