# The offline key-ceremony image: a live ISO to boot an air-gapped laptop from. No
# network drivers are loaded, no network service runs, radios are blocked, and a boot
# check refuses to show the ceremony prompt while any interface but `lo` exists
# (vigil-ceremony also refuses without --i-know-this-is-online). Nothing is written
# except the ceremony's USB stick. Build: nix build .#ceremony-image; docs/deployment.md.
{ config, lib, pkgs, modulesPath, ... }:

{
  imports = [
    ../nixos/module.nix
    "${modulesPath}/installer/cd-dvd/iso-image.nix"
  ];

  isoImage.makeEfiBootable = true;
  isoImage.makeUsbBootable = true;
  isoImage.volumeID = "VIGIL-CEREMONY";

  networking.hostName = "vigil-ceremony";
  # No networking at all.
  networking.useDHCP = false;
  networking.dhcpcd.enable = false;
  networking.networkmanager.enable = false;
  networking.wireless.enable = false;
  networking.firewall.enable = true;
  systemd.network.enable = false;
  services.resolved.enable = false;
  services.timesyncd.enable = false;
  services.openssh.enable = false;
  hardware.bluetooth.enable = false;
  # Network drivers are never loaded: the usual wired, wireless, USB-net, Thunderbolt
  # and Bluetooth families, by the kernel's module blacklist (module_blacklist= also
  # stops explicit loads).
  boot.blacklistedKernelModules = [
    "e1000" "e1000e" "igb" "igc" "ixgbe" "r8169" "r8152" "tg3" "bnx2" "bnxt_en" "atlantic"
    "alx" "atl1c" "virtio_net" "vmxnet3" "cdc_ether" "cdc_ncm" "rndis_host" "ax88179_178a"
    "usbnet" "thunderbolt_net" "iwlwifi" "iwlmvm" "ath9k" "ath10k_pci" "ath11k_pci"
    "ath12k" "mt7921e" "rtw88_pci" "rtw89_pci" "brcmfmac" "b43" "wl" "bluetooth" "btusb"
    "cfg80211" "mac80211"
  ];
  boot.kernelParams = [
    "module_blacklist=${lib.concatStringsSep "," config.boot.blacklistedKernelModules}"
  ];

  environment.systemPackages = [ config.services.vigil.package pkgs.qrencode pkgs.dosfstools pkgs.util-linux ];

  # The air-gap check: if any interface but `lo` exists, it fails, says so on the console,
  # and no login prompt ever starts (every getty requires it), so the ceremony cannot be
  # run on this boot. `vigil-ceremony` checks again for itself.
  systemd.services.vigil-airgap-check = {
    description = "Refuse the ceremony while any network interface but lo exists";
    wantedBy = [ "multi-user.target" ];
    before = [ "getty.target" ];
    serviceConfig = {
      Type = "oneshot";
      RemainAfterExit = true;
      StandardOutput = "journal+console";
      StandardError = "journal+console";
    };
    script = ''
      for dev in /sys/class/net/*; do
        name=$(basename "$dev")
        if [ "$name" != lo ]; then
          echo "VIGIL CEREMONY REFUSED: network interface $name exists, this machine is not air-gapped." >&2
          echo "Power off, remove the network hardware (or use another machine), and boot again." >&2
          exit 1
        fi
      done
      ${pkgs.util-linux}/bin/rfkill block all || true
    '';
  };
  systemd.services."getty@".requires = [ "vigil-airgap-check.service" ];
  systemd.services."getty@".after = [ "vigil-airgap-check.service" ];
  systemd.services."serial-getty@".requires = [ "vigil-airgap-check.service" ];
  systemd.services."serial-getty@".after = [ "vigil-airgap-check.service" ];

  # The keys stick (FAT, label VIGIL-KEYS, docs/key-ceremony.md) appears at /media/VIGIL-KEYS
  # when first used after it is plugged in; only root may read it.
  fileSystems."/media/VIGIL-KEYS" = {
    device = "/dev/disk/by-label/VIGIL-KEYS";
    fsType = "vfat";
    options = [ "noauto" "nofail" "x-systemd.automount" "x-systemd.device-timeout=5s"
                "x-systemd.idle-timeout=0" "umask=0077" "uid=0" "gid=0" "flush" ];
  };

  # The package for the ceremony (vigil-ceremony, vigil-signer) without the daemons.
  services.vigil.enable = false;
  users.users.root.hashedPassword = "";
  services.getty.autologinUser = "root";
  services.getty.helpLine = ''
    Vigil key ceremony (this login exists only because vigil-airgap-check passed).
    Plug in the keys stick (label VIGIL-KEYS): it is /media/VIGIL-KEYS.
    Follow docs/key-ceremony.md (also in /run/current-system/sw/share/doc/vigil).
  '';
  system.stateVersion = "25.11";
}
