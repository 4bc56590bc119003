# NixOS VM test of the mini-PC's A/B update flow (image/minipc.nix, image/update.nix). Runs
# on any machine with Nix and KVM:  nix build .#checks.x86_64-linux.update
# It cannot run in this repository's CI (no Nix store, no KVM); tests/image/repart checks
# the disk layout there, offline, from the same partition definitions.
#
# The machine boots release 1 from its image as a mini-PC would (UEFI, systemd-boot, a TPM2
# by swtpm): the first boot makes /var (LUKS2, TPM2), vigil-health passes and the boot is
# blessed. The server then publishes release 2, signed by a test release key:
# `vigil-update apply` refuses a wrong code, installs 2 with the operator's code (checked by
# the signer), and the machine reboots into slot B and blesses it. Then release 3, whose
# orchestrator refuses its config: it fails vigil-health on each of its 3 tries and the
# machine is back on release 2 by itself.
{ pkgs, appliance, minipc }:

let
  gpgKeyring = import "${pkgs.path}/nixos/tests/common/gpg-keyring.nix" { inherit pkgs; };
  testKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBvVt3dZEhgrfUfQe8mW8q7QXzQUu8Gu9l8a3C3S8xqR vm-test";

  # What every release of this test has: placeholders, the test's key and update server.
  settings = version: { lib, ... }: {
    imports = [ ../../image/placeholder-settings.nix ];
    vigil.appliance.sshKeys = [ testKey ];
    vigil.appliance.release = {
      inherit version;
      updateUrl = "http://server/";
      publicKeyring = "${gpgKeyring}/pubkey.gpg";
    };
    # No Telegram in the test network: a closed port (the bot retries, the agents run).
    services.vigil.settings.telegram.api_url = "http://127.0.0.1:9";
  };
  releaseOf = version: extra:
    (appliance { image = minipc; modules = [ (settings version) extra ]; }).config.system.build.vigilRelease;
  # Signed as `sign` would sign them (gpg), without a PCR key (unlock = "pin").
  publish = release: pkgs.runCommand "published-${release.name}" { nativeBuildInputs = [ pkgs.gnupg ]; } ''
    mkdir -p $out
    cp ${release}/vigil-minipc_* $out/
    cd $out
    sha256sum vigil-minipc_* > SHA256SUMS
    export GNUPGHOME="$(mktemp -d)"
    cp -R ${gpgKeyring}/* $GNUPGHOME
    gpg --batch --sign --detach-sign --output SHA256SUMS.gpg SHA256SUMS
  '';
  release2 = publish (releaseOf "2" { });
  release3 = publish (releaseOf "3" { services.vigil.settings.no_such_key = true; });
in
pkgs.testers.runNixOSTest {
  name = "vigil-update";

  nodes.server = {
    networking.firewall.allowedTCPPorts = [ 80 ];
    services.nginx = {
      enable = true;
      virtualHosts.server.root = "/srv/releases";
    };
    systemd.tmpfiles.rules = [ "d /srv/releases 0755 root root -" ];
  };

  nodes.machine = { lib, ... }: {
    imports = [ minipc (settings "1") ];
    virtualisation = {
      directBoot.enable = false;
      mountHostNixStore = false;
      useEFIBoot = true;
      tpm.enable = true;
      memorySize = 2048;
      # The image's own file systems, not the test framework's.
      fileSystems = lib.mkVMOverride {
        "/" = { device = "none"; fsType = "tmpfs"; options = [ "mode=0755" ]; };
        "/nix/store" = { device = "/usr/nix/store"; fsType = "none"; options = [ "bind" "ro" ]; neededForBoot = true; };
        "/var" = { device = "/dev/mapper/vigil-state"; fsType = "ext4"; neededForBoot = true; };
        "/boot" = { device = "/dev/disk/by-partlabel/ESP"; fsType = "vfat"; options = [ "umask=0077" ]; };
      };
    };
    image.repart.compression.enable = lib.mkForce false;
  };

  testScript = { nodes, ... }: ''
    import base64, hashlib, hmac, json, os, struct, subprocess, tempfile, time

    def totp(secret_b32):
        key = base64.b32decode(secret_b32 + "=" * (-len(secret_b32) % 8))
        step = int(time.time()) // 30
        mac = hmac.new(key, struct.pack(">Q", step), hashlib.sha1).digest()
        off = mac[-1] & 0x0F
        return "%06d" % ((struct.unpack(">I", mac[off:off + 4])[0] & 0x7FFFFFFF) % 1000000)

    def version():
        return machine.succeed(". /etc/os-release; echo $IMAGE_VERSION").strip()

    disk = tempfile.NamedTemporaryFile()
    subprocess.run(["${pkgs.qemu}/bin/qemu-img", "create", "-f", "qcow2", "-b",
                    "${nodes.machine.system.build.finalImage}/${nodes.machine.image.repart.imageFile}",
                    "-F", "raw", disk.name, "16G"], check=True)
    os.environ["NIX_DISK_IMAGE"] = disk.name

    server.wait_for_unit("nginx.service")
    machine.wait_for_unit("multi-user.target")

    with subtest("first boot: /var made on the free space and sealed to the TPM2; release 1 blessed"):
        machine.succeed("cryptsetup isLuks --type luks2 /dev/disk/by-partlabel/vigil-state")
        machine.succeed("findmnt -n -o SOURCE /var | grep -qx /dev/mapper/vigil-state")
        machine.succeed("dmsetup info --target verity usr")
        assert version() == "1", version()
        machine.wait_until_succeeds("test -e /boot/EFI/Linux/vigil-minipc_1.efi", timeout=120)

    with subtest("keys and credentials (an INSECURE dev keystore stands in for the ceremony)"):
        machine.succeed(
            "vigil-signer dev-init --agents sentinel --state-dir /var/lib/vigil-signer",
            "chown -R vigil-signer:vigil-signer /var/lib/vigil-signer",
            "systemd-creds encrypt --with-key=host+tpm2 --name=vigil-keystore-passphrase "
            "/var/lib/vigil-signer/dev/passphrase /etc/credstore.encrypted/vigil-keystore-passphrase",
            "printf 1:test | systemd-creds encrypt --with-key=host+tpm2 --name=vigil-telegram-bot-token "
            "- /etc/credstore.encrypted/vigil-telegram-bot-token",
            "printf 2:test | systemd-creds encrypt --with-key=host+tpm2 --name=vigil-approver-bot-token "
            "- /etc/credstore.encrypted/vigil-approver-bot-token",
            "systemctl reset-failed 'vigil-*'",
            "systemctl start vigil-signer.socket vigil-signer.service vigil-orchestrator.service vigil-approver.service",
            "systemctl start vigil-health.service",
        )
        secret = machine.succeed("cat /var/lib/vigil-signer/dev/totp-secret.base32").strip()

    with subtest("release 2 installs only with the operator's code, then boots from slot B"):
        server.succeed("cp ${release2}/* /srv/releases/")
        machine.succeed("vigil-update check | grep -q 'release 2 is available'")
        machine.fail("echo 000000 | vigil-update apply")
        machine.succeed("! ls /boot/EFI/Linux/vigil-minipc_2*")
        machine.succeed(f"echo {totp(secret)} | vigil-update apply")
        machine.succeed("ls /boot/EFI/Linux/vigil-minipc_2+3.efi")
        machine.reboot()
        machine.wait_for_unit("multi-user.target")
        assert version() == "2", version()
        machine.wait_for_unit("vigil-health.service")
        machine.wait_until_succeeds("test -e /boot/EFI/Linux/vigil-minipc_2.efi", timeout=120)

    with subtest("release 3 fails vigil-health on its tries and release 2 boots again by itself"):
        server.succeed("rm /srv/releases/*", "cp ${release3}/* /srv/releases/")
        time.sleep(31)  # a fresh code: each 30 s step is accepted once
        machine.succeed(f"echo {totp(secret)} | vigil-update apply")
        for _ in range(4):
            machine.reboot()
            machine.wait_for_unit("multi-user.target")
            if version() == "2":
                break
            machine.fail("systemctl is-active vigil-health.service")
        assert version() == "2", version()
        machine.succeed("systemctl is-active vigil-health.service")
        machine.succeed("ls /boot/EFI/Linux/vigil-minipc_3+0-3.efi")
  '';
}
