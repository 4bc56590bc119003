# The programs that the files in ../systemd/ name by absolute path (/usr/bin/NAME), and
# what provides each one: "vigil" is services.vigil.package, any other value names an
# attribute of pkgs ("systemd" is config.systemd.package). One table for every installer:
#   - nixos/module.nix substitutes /usr/bin/NAME with <package>/bin/NAME;
#   - tests/boot/run installs the units into a Debian root the same way;
#   - tests/check-systemd.sh verifies the units with the same substitutions;
#   - tests/check-nix.sh fails when a unit names a /usr/bin path missing here.
# install-units.sh refuses any /usr/bin path it was not given, so a program added to a unit
# without a line here fails every one of them, not the first boot of an appliance.
{
  vigil-signer = "vigil";
  vigil-orchestrator = "vigil";
  vigil-approver = "vigil";
  vigil-backup = "vigil";
  mount = "util-linux";
  umount = "util-linux";
  mkdir = "coreutils";
  rmdir = "coreutils";
  systemctl = "systemd";
}
