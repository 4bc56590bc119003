# The mini-PC's systemd-sysupdate transfers (sysupdate.d(5)), for systemd.sysupdate.transfers:
# how a release on the update server becomes the other slot of image/partitions.nix.
#
# A release is a directory on the server (`url`), made by `nix build .#minipc-release` and
# signed offline (docs/deployment.md, "Releases and updates"):
#   vigil-minipc_<v>.usr-x86-64.<uuid>.raw          slot content (erofs, the Nix store)
#   vigil-minipc_<v>.usr-x86-64-verity.<uuid>.raw   its dm-verity hash tree
#   vigil-minipc_<v>.efi                            the UKI (kernel, initrd, usrhash=)
#   SHA256SUMS, SHA256SUMS.gpg                      the release key's detached signature
# The UUIDs (@u) are the halves of the verity root hash: the initrd finds the slot the UKI
# names by them. `Verify = true`: nothing is written unless SHA256SUMS is signed by a key in
# /etc/systemd/import-pubring.gpg (the offline release key's public part, image/minipc.nix).
#
# Evaluated without nixpkgs by tests/image/repart, which checks the targets against the
# partitions it builds.
{
  # image/partitions.nix, evaluated.
  partitions,
  # Where releases are published (a directory URL ending in /).
  url,
  # The ESP directory holding the UKIs (systemd-boot's Type #2 entries).
  ukiDir ? "/EFI/Linux",
  # The image's name (image.repart.name): the prefix of every release file.
  name ? "vigil-minipc",
}:

let
  # The version of the running release is never replaced: an update writes the other slot.
  transfer = {
    ProtectVersion = "%A";
    Verify = true;
  };
  slot = type: pattern: {
    Transfer = transfer;
    Source = {
      Type = "url-file";
      Path = url;
      MatchPattern = "${name}_@v.${type}.@u.raw";
    };
    Target = {
      Type = "partition";
      Path = "auto";
      MatchPattern = pattern;
      MatchPartitionType = type;
      # Not mounted by type until the UKI that names its root hash boots it.
      PartitionFlags = 0;
      PartitionNoAuto = 1;
      ReadOnly = 1;
      # Slot A and slot B: installing a third release replaces the older one.
      InstancesMax = 2;
    };
  };
in
{
  "10-usr-verity" = slot partitions.types.usrVerity partitions.labels.usrVerity;
  "20-usr" = slot partitions.types.usr partitions.labels.usr;
  # Last: the UKI makes the new slot bootable only once both partitions are written.
  "30-uki" = {
    Transfer = transfer;
    Source = {
      Type = "url-file";
      Path = url;
      MatchPattern = "${name}_@v.efi";
    };
    Target = {
      Type = "regular-file";
      Path = ukiDir;
      PathRelativeTo = "boot";
      # systemd-boot counts boots in the name (+left-done): a new release gets 3 tries to
      # reach boot-complete.target (vigil-health.service), then the older one boots again.
      MatchPattern = [
        "${name}_@v+@l-@d.efi"
        "${name}_@v+@l.efi"
        "${name}_@v.efi"
      ];
      Mode = "0444";
      TriesLeft = 3;
      TriesDone = 0;
      InstancesMax = 2;
    };
  };
}
