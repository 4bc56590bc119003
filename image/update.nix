# Releases and updates of the mini-PC (A/B, ./partitions.nix and ./sysupdate.nix).
#
# A release: `nix build .#minipc-release` gives a directory with the slot's two partition
# files, the UKI and SHA256SUMS, plus `sign`, which the operator runs on the offline machine
# holding the release key(s): it signs the UKI's PCR prediction (with unlock = "signed-pcr")
# and SHA256SUMS (gpg), then the directory is published at release.updateUrl.
#
# An update: never on a timer. `sudo vigil-update check` shows the newest signed release;
# `sudo vigil-update apply` shows its version and digest, asks for a code from the
# operator's authenticator, has the signer check it (op `confirm`, recorded in the audit
# log), and only then lets systemd-sysupdate write the other slot. The operator reboots;
# the new release has 3 tries to pass vigil-health.service before the old one boots again.
{ config, lib, pkgs, ... }:

let
  cfg = config.vigil.appliance.release;
  arch = { x86_64 = "x86-64"; arm64 = "arm64"; }.${pkgs.stdenv.hostPlatform.linuxArch};
  partitions = import ./partitions.nix { inherit arch; version = cfg.version; };
  name = config.image.repart.name;
  sysupdate = "${config.systemd.package}/lib/systemd/systemd-sysupdate";
  # The signer checks operator codes for the peer that may carry them: today any peer the
  # signer allows (the orchestrator's user), from the approver issue on only the approver's.
  codeUser = "vigil";

  vigilUpdate = pkgs.writeShellApplication {
    name = "vigil-update";
    runtimeInputs = [ pkgs.curl pkgs.socat pkgs.jq pkgs.coreutils pkgs.util-linux ];
    text = ''
      url=${lib.escapeShellArg (toString cfg.updateUrl)}
      die() { echo "vigil-update: $*" >&2; exit 1; }
      [ "$(id -u)" -eq 0 ] || die "run it as root (sudo vigil-update ...)"
      [ -n "$url" ] || die "no update URL: set vigil.appliance.release.updateUrl in your flake"
      # The newest release newer than this one whose SHA256SUMS the release key signed.
      newest() { ${sysupdate} check-new 2>/dev/null | tail -n 1; }
      # One framed request to the signer (docs/protocol.md), as the user that may send codes.
      signer() {
        local json="$1" len
        len=$(printf '%s' "$json" | wc -c)
        { printf '%b' "\\x$(printf %02x $((len >> 24 & 255)))\\x$(printf %02x $((len >> 16 & 255)))"
          printf '%b' "\\x$(printf %02x $((len >> 8 & 255)))\\x$(printf %02x $((len & 255)))"
          printf '%s' "$json"; } \
          | setpriv --reuid=${codeUser} --regid=${codeUser} --clear-groups \
              socat -t 10 - UNIX-CONNECT:/run/vigil/signer.sock | tail -c +5
      }
      case "''${1:-}" in
        check)
          v=$(newest) || true
          if [ -n "$v" ]; then echo "release $v is available (running ${cfg.version}): sudo vigil-update apply"
          else echo "no newer signed release at $url (running ${cfg.version})"; fi
          ;;
        apply)
          v=$(newest) || true
          [ -n "$v" ] || die "no newer signed release at $url (running ${cfg.version})"
          sums=$(curl --fail --silent --show-error "''${url}SHA256SUMS" | sha256sum | cut -c1-64) \
            || die "cannot read ''${url}SHA256SUMS"
          echo "Release $v (running ${cfg.version}); SHA256SUMS ''${sums:0:16}…, signed by the release key."
          read -r -p "Code from your authenticator to install it: " code
          [[ "$code" =~ ^[0-9]{6}$ ]] || die "a code is 6 digits"
          answer=$(signer "{\"v\":1,\"id\":\"update\",\"op\":\"confirm\",\"purpose\":\"os_update ${name} $v $sums\",\"code\":\"$code\"}")
          [ "$(printf '%s' "$answer" | jq -r '.result.confirmed // false')" = true ] \
            || die "the signer refused the code: $(printf '%s' "$answer" | jq -r '.error.message // .')"
          ${sysupdate} update "$v" || die "systemd-sysupdate could not install $v (nothing changed in the running slot)"
          echo "Release $v is installed in the other slot. Reboot when it suits you (sudo systemctl reboot);"
          echo "it has 3 tries to pass vigil-health, then release ${cfg.version} boots again by itself."
          ;;
        *) echo "usage: vigil-update check | apply" >&2; exit 2 ;;
      esac
    '';
  };
in
{
  config = lib.mkMerge [
    {
      environment.systemPackages = [ vigilUpdate ];

      # The release directory; `sign` runs offline (the private keys never enter a build).
      system.build.vigilRelease = pkgs.runCommand "${name}-release-${cfg.version}" { } ''
        mkdir -p $out
        cp ${config.system.build.finalImage}/${name}_${cfg.version}.usr-*.raw $out/
        cp ${config.system.build.uki}/${config.system.boot.loader.ukiFile} $out/${name}_${cfg.version}.efi
        cat > $out/sign <<'EOF'
        #!/bin/sh
        # On the offline release machine: sh sign GPG-KEY-ID [PCR-PRIVATE-KEY.pem]
        set -eu
        cd "$(dirname "$0")"
        if [ -n "''${2:-}" ]; then
          ${pkgs.systemdUkify}/bin/ukify build --config=${config.boot.uki.configFile} \
            --cmdline="$(${pkgs.systemdUkify}/bin/ukify inspect --json=short ${name}_${cfg.version}.efi | ${pkgs.jq}/bin/jq -r '.".cmdline".text')" \
            --pcr-private-key="$2" --pcr-public-key=${toString config.vigil.appliance.tpm.pcrPublicKey} \
            --output=${name}_${cfg.version}.efi.signed
          mv ${name}_${cfg.version}.efi.signed ${name}_${cfg.version}.efi
        fi
        sha256sum ${name}_${cfg.version}.* > SHA256SUMS
        gpg --batch --yes --local-user "$1" --detach-sign --output SHA256SUMS.gpg SHA256SUMS
        echo "signed: publish this directory's files at the update URL"
        EOF
        chmod +x $out/sign
      '';
    }
    (lib.mkIf (cfg.updateUrl != null) {
      systemd.sysupdate = {
        enable = true;
        transfers = import ./sysupdate.nix { inherit partitions name; url = cfg.updateUrl; };
      };
      # Updates are the operator's decision (vigil-update apply), never a timer's.
      systemd.timers.systemd-sysupdate.wantedBy = lib.mkForce [ ];
      environment.etc."systemd/import-pubring.gpg".source = cfg.publicKeyring;
    })
  ];
}
