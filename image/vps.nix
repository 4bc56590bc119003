# The VPS image: a qcow2 (and raw) EFI disk for a provider's "custom image" upload, built by
# nixpkgs' image variants (system.build.images.qemu-efi / raw-efi). The operator's SSH key
# comes at first boot through cloud-init (the provider's metadata); cloud-init is used for
# that and for networking only: users stay declared in Nix.
# Build: nix build .#vps-image (qcow2) or .#vps-image-raw; docs/deployment.md.
#
# Not A/B: a VPS is updated with nixos-rebuild from the operator's flake (generations and
# rollback in the boot menu); the provider's disk, console and snapshots are the recovery.
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
      # nixpkgs sets system_info as one mkDefault value: a definition here replaces all of
      # it, so the distro and the network renderer are repeated with the default user.
      system_info = {
        distro = "nixos";
        network.renderers = [ "networkd" ];
        default_user = {
          name = config.vigil.appliance.adminUser;
          lock_passwd = true;
        };
      };
    };
  };
  # cloud-init writes ~/.ssh/authorized_keys of the admin user at first boot, so nixpkgs'
  # lock-out assertion cannot see that key: keys from cloud-init count as the login.
  services.openssh.authorizedKeysInHomedir = true;
  users.allowNoPasswordLogin = lib.mkDefault (config.vigil.appliance.sshKeys == [ ]);

  # One network stack: systemd-networkd, configured by cloud-init from the provider's
  # metadata, with DHCP on every Ethernet as the fallback; no dhcpcd beside it.
  networking.useNetworkd = true;
  networking.useDHCP = false;
  networking.dhcpcd.enable = false;
  systemd.network.networks."99-vigil-dhcp-fallback" = {
    matchConfig.Name = "en* eth*";
    networkConfig.DHCP = "yes";
  };

  # The disk layout of nixpkgs' EFI disk images (labels nixos and ESP), with the root grown
  # to the provider's disk at first boot. The image variants define the same file systems
  # at mkImageMediaOverride (60); 50 here, so the image and a later nixos-rebuild mount
  # them alike (with the ESP private: umask=0077).
  boot.growPartition = true;
  fileSystems = lib.mkOverride 50 {
    "/" = {
      device = "/dev/disk/by-label/nixos";
      fsType = "ext4";
      autoResize = true;
    };
    "/boot" = {
      device = "/dev/disk/by-label/ESP";
      fsType = "vfat";
      options = [ "umask=0077" ];
    };
  };
  boot.loader.systemd-boot.enable = lib.mkDefault true;
  boot.loader.efi.canTouchEfiVariables = false;

  # The providers' serial console.
  boot.kernelParams = [ "console=ttyS0,115200n8" "console=tty0" ];
}
