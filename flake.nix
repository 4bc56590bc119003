# Vigil as a flake: the package built from this workspace, the NixOS module, the
# appliance images and the VM test. docs/deployment.md says how each is used.
#
# nixpkgs must carry rustc >= the workspace's rust-version (1.95); nixos-unstable does.
# flake.lock is written by the first `nix flake lock` on a machine with Nix (this repo's
# CI has no Nix store: it only parses and evaluates the .nix files, tests/check-nix.sh).
{
  description = "Vigil: LLM agents with crypto wallets, keys in a confined signer";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

  outputs = { self, nixpkgs }:
    let
      lib = nixpkgs.lib;
      systems = [ "x86_64-linux" "aarch64-linux" ];
      forAllSystems = f: lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});

      # One appliance configuration per image; also usable as nixosConfigurations for
      # nixos-rebuild --flake .#vigil-vps --target-host ... .
      appliance = system: imageModule: lib.nixosSystem {
        inherit system;
        modules = [
          self.nixosModules.default
          imageModule
          # The operator's own settings (SSH key, operators, agents) go into a module
          # like this one in their fleet flake; the image builds with placeholders.
          ./image/placeholder-settings.nix
        ];
      };
    in
    {
      overlays.default = final: _prev: {
        vigil = final.callPackage ./nixos/package.nix { };
      };

      packages = forAllSystems (pkgs:
        let
          system = pkgs.stdenv.hostPlatform.system;
          vigil = pkgs.callPackage ./nixos/package.nix { };
          images = {
            vps = appliance system ./image/vps.nix;
            minipc = appliance system ./image/minipc.nix;
            ceremony = appliance system ./image/ceremony.nix;
          };
        in
        {
          inherit vigil;
          default = vigil;
          # qcow2 for the providers that take it, raw for those that want a plain disk.
          vps-image = images.vps.config.system.build.images.qemu-efi;
          vps-image-raw = images.vps.config.system.build.images.raw-efi;
          minipc-image = images.minipc.config.system.build.image;
          ceremony-image = images.ceremony.config.system.build.isoImage;
        });

      nixosModules = {
        # services.vigil, with this flake's package as the default.
        default = { pkgs, lib, ... }: {
          imports = [ ./nixos/module.nix ];
          services.vigil.package =
            lib.mkDefault self.packages.${pkgs.stdenv.hostPlatform.system}.vigil;
        };
        # The appliance's operator hardening, for existing hosts that want it too.
        hardening = ./nixos/hardening.nix;
      };

      nixosConfigurations = {
        vigil-vps = appliance "x86_64-linux" ./image/vps.nix;
        vigil-minipc = appliance "x86_64-linux" ./image/minipc.nix;
        vigil-ceremony = appliance "x86_64-linux" ./image/ceremony.nix;
      };

      # nix flake check / nix build .#checks.x86_64-linux.vm (needs KVM).
      checks = lib.genAttrs [ "x86_64-linux" ] (system: {
        vm = import ./nixos/tests/vm.nix {
          pkgs = nixpkgs.legacyPackages.${system};
          vigilModule = self.nixosModules.default;
        };
        package = self.packages.${system}.vigil;
      });

      formatter = forAllSystems (pkgs: pkgs.nixfmt-rfc-style);
    };
}
