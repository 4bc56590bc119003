# The mini-PC image: a raw GPT disk image built by systemd-repart (nixpkgs' image.repart),
# to `dd` onto a USB stick or straight onto the internal disk. It boots a unified kernel
# image (UKI) through systemd-boot. At first boot systemd-repart in the initrd grows the
# root partition and creates the state partition (/var: keystore, ledger, SQLite),
# encrypted with LUKS2 and sealed to the TPM2 (Encrypt=tpm2), so a stolen disk is
# useless without the machine. Build: nix build .#minipc-image; docs/deployment.md.
{ config, lib, pkgs, modulesPath, ... }:

let
  efiArch = pkgs.stdenv.hostPlatform.efiArch;
in
{
  imports = [
    ./common.nix
    "${modulesPath}/image/repart.nix"
  ];

  networking.hostName = "vigil-minipc";
  networking.useDHCP = lib.mkDefault true;

  image.repart = {
    name = "vigil-minipc";
    partitions = {
      "10-esp" = {
        contents = {
          "/EFI/BOOT/BOOT${lib.toUpper efiArch}.EFI".source =
            "${pkgs.systemd}/lib/systemd/boot/efi/systemd-boot${efiArch}.efi";
          "/EFI/Linux/${config.system.boot.loader.ukiFile}".source =
            "${config.system.build.uki}/${config.system.boot.loader.ukiFile}";
        };
        repartConfig = {
          Type = "esp";
          Format = "vfat";
          Label = "ESP";
          SizeMinBytes = "512M";
        };
      };
      "20-root" = {
        storePaths = [ config.system.build.toplevel ];
        repartConfig = {
          Type = "root";
          Format = "ext4";
          Label = "nixos";
          Minimize = "guess";
        };
      };
    };
  };

  # First boot: grow root; create the encrypted state partition in the free space.
  boot.initrd.systemd.enable = true;
  boot.initrd.systemd.repart.enable = true;
  systemd.repart.partitions = {
    "20-root" = { Type = "root"; };
    "30-var" = {
      Type = "var";
      Format = "ext4";
      Label = "vigil-state";
      Encrypt = "tpm2";
      SizeMinBytes = "4G";
    };
  };
  boot.initrd.luks.devices.vigil-state = {
    device = "/dev/disk/by-partlabel/vigil-state";
    crypttabExtraOpts = [ "tpm2-device=auto" ];
  };

  fileSystems."/" = {
    device = "/dev/disk/by-partlabel/nixos";
    fsType = "ext4";
  };
  fileSystems."/var" = {
    device = "/dev/mapper/vigil-state";
    fsType = "ext4";
    neededForBoot = true;
  };
  fileSystems."/boot" = {
    device = "/dev/disk/by-partlabel/ESP";
    fsType = "vfat";
    options = [ "umask=0077" ];
  };

  boot.loader.grub.enable = false;
  boot.loader.systemd-boot.enable = true;
  # systemd credentials sealed to this machine's TPM2 (systemd-creds encrypt --with-key=tpm2).
  security.tpm2.enable = true;
}
