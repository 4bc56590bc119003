# Vigil as a flake: the package built from this workspace, the NixOS module, the appliance
# image modules and the VM tests. docs/deployment.md says how each is used; an operator's
# own flake builds its appliance with `vigil.lib.appliance` (docs/quickstart.md).
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

      # An appliance: the module, one image module, and the operator's own modules (SSH key,
      # operators, agents: docs/quickstart.md). Also a nixosConfiguration for
      # nixos-rebuild --flake .#name --target-host ... (the VPS; the mini-PC updates A/B).
      appliance = { system ? "x86_64-linux", image, modules ? [ ] }: lib.nixosSystem {
        inherit system;
        modules = [ self.nixosModules.default image ] ++ modules;
      };
      # The images this repository builds by itself carry placeholders (operator id 1, one
      # holding agent). The mini-PC is not among them: it needs your SSH key at build time.
      withPlaceholders = image: appliance { inherit image; modules = [ ./image/placeholder-settings.nix ]; };
    in
    {
      lib = { inherit appliance; };

      overlays.default = final: _prev: {
        vigil = final.callPackage ./nixos/package.nix { };
      };

      packages = forAllSystems (pkgs:
        let
          system = pkgs.stdenv.hostPlatform.system;
          vigil = pkgs.callPackage ./nixos/package.nix { };
          images = {
            vps = withPlaceholders self.nixosModules.vps;
            ceremony = withPlaceholders self.nixosModules.ceremony;
          };
        in
        {
          inherit vigil;
          default = vigil;
          # qcow2 for the providers that take it, raw for those that want a plain disk.
          vps-image = images.vps.config.system.build.images.qemu-efi;
          vps-image-raw = images.vps.config.system.build.images.raw-efi;
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
        # The images, for an operator's flake (vigil.lib.appliance { image = ...; }):
        # build config.system.build.images.qemu-efi (vps), .finalImage and .vigilRelease
        # (minipc), .isoImage (ceremony).
        vps = ./image/vps.nix;
        minipc = ./image/minipc.nix;
        ceremony = ./image/ceremony.nix;
      };

      nixosConfigurations = {
        vigil-vps = withPlaceholders self.nixosModules.vps;
        vigil-ceremony = withPlaceholders self.nixosModules.ceremony;
      };

      # nix flake check / nix build .#checks.x86_64-linux.<name> (needs KVM).
      checks = lib.genAttrs [ "x86_64-linux" ] (system: {
        vm = import ./nixos/tests/vm.nix {
          pkgs = nixpkgs.legacyPackages.${system};
          vigilModule = self.nixosModules.default;
        };
        update = import ./nixos/tests/update.nix {
          pkgs = nixpkgs.legacyPackages.${system};
          inherit appliance;
          minipc = self.nixosModules.minipc;
        };
        package = self.packages.${system}.vigil;
      });

      formatter = forAllSystems (pkgs: pkgs.nixfmt-rfc-style);
    };
}
