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

  # The air-gap check: fail loudly (and block the ceremony login) if any non-loopback
  # network interface exists.
  systemd.services.vigil-airgap-check = {
    description = "Refuse the ceremony while any network interface but lo exists";
    wantedBy = [ "multi-user.target" ];
    before = [ "getty.target" ];
    serviceConfig = {
      Type = "oneshot";
      RemainAfterExit = true;
    };
    script = ''
      for dev in /sys/class/net/*; do
        name=$(basename "$dev")
        if [ "$name" != lo ]; then
          echo "network interface $name exists: this machine is not air-gapped" >&2
          exit 1
        fi
      done
      ${pkgs.util-linux}/bin/rfkill block all || true
    '';
  };

  # The package for the ceremony (vigil-ceremony, vigil-signer) without the daemons.
  services.vigil.enable = false;
  users.users.root.hashedPassword = "";
  services.getty.autologinUser = "root";
  services.getty.helpLine = ''
    Vigil key ceremony. Check that vigil-airgap-check succeeded:
      systemctl status vigil-airgap-check
    then follow docs/deployment.md "Key ceremony".
  '';
  system.stateVersion = "25.11";
}
