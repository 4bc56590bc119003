# The mini-PC image: a raw GPT disk built by systemd-repart (nixpkgs' image.repart) in the
# layout of ./partitions.nix: an ESP with systemd-boot and the release's UKI, the Nix store
# as a read-only erofs `usr` partition checked by dm-verity (the UKI carries its root hash),
# an empty B slot of the same size, and at first boot an encrypted /var made in the free
# space. `/` is a tmpfs: everything that must last lives on /var.
#
# Releases are A/B (./sysupdate.nix): `vigil-update` writes the next release into the
# other slot after the operator approves it with a code, the new UKI gets 3 tries at
# reaching boot-complete.target (vigil-health.service), and a release that fails them boots
# the old slot again by itself. How /var is sealed to the TPM2: ./tpm.nix.
# Build: nix build .#minipc-image from a flake with your settings (docs/deployment.md).
{ config, lib, pkgs, modulesPath, ... }:

let
  cfg = config.vigil.appliance;
  efiArch = pkgs.stdenv.hostPlatform.efiArch;
  arch = { x86_64 = "x86-64"; arm64 = "arm64"; }.${pkgs.stdenv.hostPlatform.linuxArch};
  partitions = import ./partitions.nix { inherit arch; version = config.system.image.version; };
in
{
  imports = [
    ./common.nix
    ./tpm.nix
    ./update.nix
    "${modulesPath}/image/repart.nix"
  ];

  options.vigil.appliance.release = {
    version = lib.mkOption {
      type = lib.types.strMatching "[0-9]+";
      default = "1";
      example = "7";
      description = ''
        This release's number (system.image.version): the slot label, the UKI's name and
        what systemd-sysupdate compares. Raise it for every release you publish.
      '';
    };
    updateUrl = lib.mkOption {
      type = lib.types.nullOr lib.types.str;
      default = null;
      example = "https://updates.example.com/vigil/";
      description = ''
        Where your signed releases are published (a directory URL ending in /). Null: no
        A/B updates (flash a new image to update).
      '';
    };
    publicKeyring = lib.mkOption {
      type = lib.types.nullOr lib.types.path;
      default = null;
      description = ''
        The offline release key's public part (`gpg --export KEYID > release.gpg`):
        systemd-sysupdate installs only releases whose SHA256SUMS it signed. Required with
        updateUrl.
      '';
    };
  };

  config = {
    assertions = [
      {
        assertion = cfg.sshKeys != [ ];
        message = ''
          vigil.appliance.sshKeys is empty: the mini-PC image has no other way in (no
          passwords, no console login, no cloud-init). Put your SSH public key into your
          flake, e.g. vigil.appliance.sshKeys = [ "ssh-ed25519 AAAA... you@laptop" ];
          (docs/quickstart.md, step 2).
        '';
      }
      {
        assertion = cfg.release.updateUrl == null || cfg.release.publicKeyring != null;
        message = ''
          vigil.appliance.release.updateUrl is set but vigil.appliance.release.publicKeyring
          is not: updates must be signed by your offline release key. Export its public part
          (gpg --export KEYID > release.gpg) and set publicKeyring = ./release.gpg;
        '';
      }
    ];

    networking.hostName = "vigil-minipc";
    networking.useNetworkd = true;
    networking.useDHCP = true;

    system.image = {
      id = "vigil-minipc";
      version = cfg.release.version;
    };

    image.repart = {
      name = "vigil-minipc";
      # Split artifacts are the release files (./sysupdate.nix).
      split = true;
      verityStore = {
        enable = true;
        # Named as ./sysupdate.nix names UKIs, with the boot counter of a fresh release (+3):
        # the first boot of a flashed disk is counted like any update's.
        ukiPath = "/EFI/Linux/vigil-minipc_${cfg.release.version}+3.efi";
      };
      partitions = lib.mapAttrs (_id: repartConfig: { inherit repartConfig; }) partitions.image // {
        "00-esp" = {
          repartConfig = partitions.image."00-esp";
          contents."/EFI/BOOT/BOOT${lib.toUpper efiArch}.EFI".source =
            "${config.systemd.package}/lib/systemd/boot/efi/systemd-boot${efiArch}.efi";
          # Boot counting: systemd-boot tries the newest UKI first, 3 times at most.
          contents."/loader/loader.conf".source = pkgs.writeText "loader.conf" ''
            timeout 3
            editor no
          '';
        };
      };
    };
    # The first boot: /var (LUKS2, sealed as ./tpm.nix says) in the space left on the disk.
    # repart finds the disk through the ESP, as / is a tmpfs and has no disk behind it.
    boot.initrd.systemd.enable = true;
    boot.initrd.systemd.repart.enable = true;
    systemd.repart.partitions = partitions.firstBoot;
    boot.initrd.systemd.initrdBin = [ pkgs.e2fsprogs ];
    boot.initrd.systemd.services.vigil-repart-disk = {
      description = "Point systemd-repart at the disk holding the ESP";
      requiredBy = [ "systemd-repart.service" ];
      before = [ "systemd-repart.service" ];
      unitConfig.DefaultDependencies = false;
      serviceConfig = {
        Type = "oneshot";
        RemainAfterExit = true;
        ExecStart = "/bin/ln -sf /dev/disk/by-partlabel/ESP /run/systemd/volatile-root";
      };
    };

    fileSystems = {
      "/" = {
        device = "none";
        fsType = "tmpfs";
        options = [ "mode=0755" "size=25%" ];
      };
      # The store: the verified usr partition of the running slot (opened by the initrd
      # from the UKI's usrhash=), read-only.
      "/nix/store" = {
        device = "/usr/nix/store";
        fsType = "none";
        options = [ "bind" "ro" ];
        neededForBoot = true;
      };
      "/var" = {
        device = "/dev/mapper/vigil-state";
        fsType = "ext4";
        neededForBoot = true;
      };
      # Read-write: systemd-bless-boot renames the UKI when a boot was good, and
      # systemd-sysupdate writes new UKIs here.
      "/boot" = {
        device = "/dev/disk/by-partlabel/ESP";
        fsType = "vfat";
        options = [ "umask=0077" ];
      };
    };
    boot.initrd.luks.devices.vigil-state = {
      device = "/dev/disk/by-partlabel/${partitions.firstBoot."50-var".Label}";
      crypttabExtraOpts = [ "tpm2-device=auto" ];
    };

    # What must outlive a reboot lives on /var: the credentials (the units read
    # /etc/credstore.encrypted) and the SSH host key. The machine id is made anew at each
    # boot (journalctl reads the older boots' files all the same).
    systemd.tmpfiles.rules = [
      "d /var/lib/vigil-appliance 0700 root root -"
      "d /var/lib/credstore.encrypted 0700 root root -"
      "L+ /etc/credstore.encrypted - - - - /var/lib/credstore.encrypted"
    ];
    services.openssh.hostKeys = [
      { path = "/var/lib/vigil-appliance/ssh_host_ed25519_key"; type = "ed25519"; }
    ];

    # A read-only /usr and store: no /usr/bin/env to create, no Nix daemon (releases are
    # whole images, not nixos-rebuild).
    system.activationScripts.usrbinenv = lib.mkForce "";
    nix.enable = false;

    # systemd-boot is put on the ESP by the image itself (above); NixOS's boot loader
    # installer, which writes generations, is not used.
    boot.loader.grub.enable = false;
    boot.loader.efi.canTouchEfiVariables = false;
  };
}
