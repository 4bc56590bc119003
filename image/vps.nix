# The VPS image: a qcow2 (and raw) EFI disk for a provider's "custom image" upload. The
# operator's SSH key comes at first boot through cloud-init (the provider's metadata);
# cloud-init is used for that and for networking only: users stay declared in Nix.
# Build: nix build .#vps-image (qcow2) or .#vps-image-raw; docs/deployment.md.
{ config, lib, pkgs, modulesPath, ... }:

{
  imports = [
    ./common.nix
    "${modulesPath}/profiles/qemu-guest.nix"
  ];

  networking.hostName = "vigil-vps";

  services.cloud-init = {
    enable = true;
    network.enable = true;
    settings = {
      # Keys go to the declared admin user; root is never touched.
      disable_root = true;
      users = [ "default" ];
      system_info.default_user = {
        name = config.vigil.appliance.adminUser;
        lock_passwd = true;
      };
    };
  };
  # cloud-init writes ~/.ssh/authorized_keys of the admin user.
  services.openssh.authorizedKeysInHomedir = true;

  # Grow the root partition and file system to the provider's disk size at first boot.
  boot.growPartition = true;
  # The disk layout of nixpkgs' EFI disk images (labels nixos and ESP); mkDefault so the
  # image variant's own definitions win where they differ.
  fileSystems."/" = lib.mkDefault {
    device = "/dev/disk/by-label/nixos";
    fsType = "ext4";
    autoResize = true;
  };
  fileSystems."/boot" = lib.mkDefault {
    device = "/dev/disk/by-label/ESP";
    fsType = "vfat";
    options = [ "umask=0077" ];
  };
  boot.loader.systemd-boot.enable = lib.mkDefault true;
  boot.loader.efi.canTouchEfiVariables = false;

  # The providers' serial console.
  boot.kernelParams = [ "console=ttyS0,115200n8" "console=tty0" ];
}
