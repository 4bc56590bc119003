# How the mini-PC's /var (LUKS2, made by systemd-repart at first boot) is sealed to the TPM2,
# so that a stolen box gives nothing away. The credentials (keystore passphrase, bot token)
# are made with `systemd-creds encrypt --with-key=host+tpm2`: the host key lives on /var, so
# they are exactly as safe as /var, and bound to this TPM besides.
#
# Why not systemd's default (PCR 7, the Secure Boot state): with Secure Boot off, which many
# mini-PCs ship with, PCR 7 is the same whatever boots, so a thief's own USB system unseals
# /var and every credential on it. Two policies that hold, vigil.appliance.tpm.unlock:
#   "pin"        TPM2 + a PIN typed at the console at every boot (PCR 7 as well). A thief
#                has neither; the TPM locks out PIN guessing. Cost: after a power cut or an
#                update the box waits at the PIN prompt for you. The default.
#   "signed-pcr" TPM2 + a PCR 11 policy signed by your offline PCR key (the UKI carries the
#                signed prediction), and PCR 12 as measured at first boot (no kernel command
#                line override: with Secure Boot off systemd-stub accepts one, and would let
#                a thief boot your own UKI into a shell). Only your signed releases unseal
#                /var; the box reboots unattended. Cost: a second offline key, and every
#                release's UKI signed with it (docs/deployment.md, "Releases").
# Both keep a recovery key (shown once at `vigil-seal-var`) for a TPM that changes.
{ config, lib, pkgs, ... }:

let
  cfg = config.vigil.appliance.tpm;
  volume = "/dev/disk/by-partlabel/vigil-state";
  pcrKeyPath = "/etc/systemd/tpm2-pcr-public-key.pem";

  # The operator's one-time step after the first boot (docs/quickstart.md): a recovery key,
  # then the TPM2 slot of the configured policy in place of repart's.
  sealVar = pkgs.writeShellApplication {
    name = "vigil-seal-var";
    runtimeInputs = [ config.systemd.package pkgs.cryptsetup pkgs.jq ];
    text = ''
      if [ "$(id -u)" -ne 0 ]; then echo "vigil-seal-var: run it as root (sudo)" >&2; exit 1; fi
      echo "A recovery key for /var follows. Write it on paper and keep it apart from the box:"
      echo "it opens /var if the TPM2 or the firmware changes. It is not shown again."
      systemd-cryptenroll --unlock-tpm2-device=auto --recovery-key ${volume}
      ${if cfg.unlock == "pin" then ''
        echo "Now choose the PIN you will type at every boot (the TPM locks out guessing)."
        systemd-cryptenroll --unlock-tpm2-device=auto --wipe-slot=tpm2 --tpm2-device=auto \
          --tpm2-pcrs=7 --tpm2-with-pin=yes ${volume}
      '' else ''
        systemd-cryptenroll --unlock-tpm2-device=auto --wipe-slot=tpm2 --tpm2-device=auto \
          --tpm2-public-key=${pcrKeyPath} --tpm2-public-key-pcrs=11 --tpm2-pcrs=12 ${volume}
      ''}
      echo "/var is sealed as vigil.appliance.tpm.unlock = \"${cfg.unlock}\" says."
    '';
  };

  # At every boot: does /var's TPM2 slot follow the configured policy? A warning otherwise.
  checkSeal = pkgs.writeShellScript "vigil-check-seal" ''
    tokens=$(${pkgs.cryptsetup}/bin/cryptsetup luksDump --dump-json-metadata ${volume} \
      | ${pkgs.jq}/bin/jq -c '[.tokens[] | select(.type == "systemd-tpm2")]')
    recovery=$(${pkgs.cryptsetup}/bin/cryptsetup luksDump --dump-json-metadata ${volume} \
      | ${pkgs.jq}/bin/jq '[.tokens[] | select(.type == "systemd-recovery")] | length')
    ${if cfg.unlock == "pin" then ''
      ok=$(echo "$tokens" | ${pkgs.jq}/bin/jq 'length == 1 and .[0]["tpm2-pin"] == true')
    '' else ''
      ok=$(echo "$tokens" | ${pkgs.jq}/bin/jq 'length == 1 and (.[0]["tpm2_pubkey_pcrs"] | length) > 0')
    ''}
    if [ "$ok" != true ] || [ "$recovery" -lt 1 ]; then
      echo "/var is NOT sealed as vigil.appliance.tpm.unlock = \"${cfg.unlock}\" asks (or has no recovery key): a stolen box may unseal it. Run: sudo vigil-seal-var" >&2
      exit 1
    fi
    echo "/var sealed: ${cfg.unlock}, recovery key enrolled"
  '';
in
{
  options.vigil.appliance.tpm = {
    unlock = lib.mkOption {
      type = lib.types.enum [ "pin" "signed-pcr" ];
      default = "pin";
      description = ''
        How /var (and so every credential) is sealed to the TPM2: "pin" (TPM2 + a PIN at
        every boot) or "signed-pcr" (TPM2 + a PCR 11 policy signed by your offline PCR key,
        unattended reboots). The trade-offs: image/tpm.nix and docs/deployment.md.
      '';
    };
    pcrPublicKey = lib.mkOption {
      type = lib.types.nullOr lib.types.path;
      default = null;
      example = lib.literalExpression "./pcr-public.pem";
      description = ''
        The public part of your offline PCR signing key (PEM), for unlock = "signed-pcr".
        Its private part never enters the build: releases are signed offline.
      '';
    };
  };

  config = {
    assertions = [
      {
        assertion = cfg.unlock != "signed-pcr" || cfg.pcrPublicKey != null;
        message = ''
          vigil.appliance.tpm.unlock = "signed-pcr" needs vigil.appliance.tpm.pcrPublicKey:
          make the key on your offline machine (openssl genpkey -algorithm RSA
          -pkeyopt rsa_keygen_bits:2048 -out pcr-private.pem; openssl pkey -in
          pcr-private.pem -pubout -out pcr-public.pem) and set pcrPublicKey = ./pcr-public.pem;
          or use unlock = "pin".
        '';
      }
    ];

    security.tpm2.enable = true;
    boot.initrd.availableKernelModules = [ "tpm_crb" "tpm_tis" ];

    # First boot: repart seals /var to PCR 7 (a PIN cannot be typed there) or, with a PCR
    # key, to the signed policy directly; `vigil-seal-var` then sets the final slot.
    boot.initrd.systemd.repart.extraArgs =
      [ "--tpm2-device=auto" ]
      ++ (if cfg.unlock == "signed-pcr" then [
        "--tpm2-public-key=${pcrKeyPath}"
        "--tpm2-public-key-pcrs=11"
        "--tpm2-pcrs=12"
      ] else [ "--tpm2-pcrs=7" ]);

    boot.initrd.systemd.contents = lib.mkIf (cfg.pcrPublicKey != null) {
      ${pcrKeyPath}.source = cfg.pcrPublicKey;
    };
    environment.etc = lib.mkIf (cfg.pcrPublicKey != null) {
      "systemd/tpm2-pcr-public-key.pem".source = cfg.pcrPublicKey;
    };
    # The UKI carries the public key (.pcrpkey); the signature (.pcrsig) is added offline.
    boot.uki.settings.UKI = lib.mkIf (cfg.pcrPublicKey != null) {
      PCRPKey = "${cfg.pcrPublicKey}";
    };

    environment.systemPackages = [ sealVar ];
    systemd.services.vigil-check-seal = {
      description = "Check that /var is sealed to the TPM2 as configured";
      wantedBy = [ "multi-user.target" ];
      after = [ "var.mount" ];
      serviceConfig = {
        Type = "oneshot";
        RemainAfterExit = true;
        ExecStart = checkSeal;
      };
    };
  };
}
