# The mini-PC's disk as systemd-repart partition definitions (repart.d(5) keys), in one
# place for everything that makes or checks it:
#   - image/minipc.nix builds the image from `image` (nixpkgs' image.repart with its
#     verityStore) and creates `firstBoot` with systemd-repart in the initrd;
#   - image/minipc.nix's sysupdate transfers write releases into the slots named here;
#   - tests/image/repart builds the same layout offline with Debian's systemd-repart and
#     checks types, sizes, labels and the verity root hash (no Nix needed).
#
#   ESP            512 MiB  systemd-boot, the UKIs of both slots (boot counting)
#   usr A          3 GiB    the Nix store of the running release, erofs, read-only
#   usr A verity   256 MiB  its dm-verity hash tree; the UKI carries the root hash (usrhash=)
#   usr B, B verity         the same sizes, label "_empty": where systemd-sysupdate writes
#                           the next release; A and B swap roles at every update
#   /var           rest     made at first boot: LUKS2 sealed to the TPM2, ext4, all state
#
# A slot is sized once for all later releases: a release whose store does not fit in
# `sizes.usr` fails to build (erofs larger than the partition), never at update time.
{
  # The kernel's name for the CPU architecture in GPT partition types: x86-64 or arm64.
  arch ? "x86-64",
  # The release written into slot A (system.image.version).
  version ? "1",
}:

let
  # MiB. The hash tree (sha256) is 1/128 of the data with 4 KiB blocks, as set below
  # (about 25 MiB for 3 GiB), but 1/16 with 512-byte blocks (about 205 MiB), which is what
  # systemd-repart before 255 and newer ones without VerityDataBlockSizeBytes= use on
  # 512-byte sectors (nixpkgs' image.repart.sectorSize): 256 MiB holds either.
  sizes = {
    esp = 512;
    usr = 3072;
    usrVerity = 256;
    varMin = 4096;
  };
  exactly = mib: {
    SizeMinBytes = "${toString mib}M";
    SizeMaxBytes = "${toString mib}M";
  };
  # systemd-sysupdate finds releases by partition label (@v is the version) and free
  # slots by the label "_empty"; the data and hash partitions of a release pair up by
  # VerityMatchKey and by UUIDs derived from the root hash.
  labels = {
    usr = "vigil_@v";
    usrVerity = "vigil_@v_verity";
    empty = "_empty";
  };
  label = pattern: builtins.replaceStrings [ "@v" ] [ version ] pattern;
  types = {
    usr = "usr-${arch}";
    usrVerity = "usr-${arch}-verity";
  };
  # Split artifacts (image.repart.split): a release is <image>_<version>.<type>.<uuid>.raw for
  # usr and its verity partition; sysupdate reads version and UUID back from those names.
  splitName = "%t.%U";
in
{
  inherit sizes labels types splitName;

  # Built into the image (keys are nixpkgs' verityStore partition ids where it has them).
  image = {
    "00-esp" = {
      Type = "esp";
      Format = "vfat";
      Label = "ESP";
      SplitName = "-";
    } // exactly sizes.esp;
    "10-store-verity" = {
      Type = types.usrVerity;
      Verity = "hash";
      VerityMatchKey = "store";
      # 4 KiB: the page size, the kernel's fastest verity path (systemd >= 255).
      VerityDataBlockSizeBytes = 4096;
      VerityHashBlockSizeBytes = 4096;
      Label = label labels.usrVerity;
      SplitName = splitName;
    } // exactly sizes.usrVerity;
    "20-store" = {
      Type = types.usr;
      Format = "erofs";
      Verity = "data";
      VerityMatchKey = "store";
      Label = label labels.usr;
      SplitName = splitName;
    } // exactly sizes.usr;
    "30-store-verity-b" = {
      Type = types.usrVerity;
      Label = labels.empty;
      SplitName = "-";
    } // exactly sizes.usrVerity;
    "40-store-b" = {
      Type = types.usr;
      Label = labels.empty;
      SplitName = "-";
    } // exactly sizes.usr;
  };

  # Made by systemd-repart in the initrd at first boot, in the space left on the disk the
  # image was written to. `Encrypt` is the option vigil.appliance.tpm.* decides
  # (image/tpm.nix); tests/image/repart makes it with a key file (no TPM in CI).
  firstBoot = {
    "50-var" = {
      Type = "var";
      Format = "ext4";
      Label = "vigil-state";
      Encrypt = "tpm2";
      SizeMinBytes = "${toString sizes.varMin}M";
    };
  };
}
