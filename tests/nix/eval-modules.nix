# Evaluated by tests/check-nix.sh with `nix-instantiate --eval --strict --json`, no
# nixpkgs needed: the module files are functions of the expected arguments, their option
# trees (names, descriptions), and services.vigil's assertions for a table of configs.
let
  b = builtins;
  stub = import ./stub.nix;
  module = import ../../nixos/module.nix;
  hardening = import ../../nixos/hardening.nix;

  # The module called like the NixOS module system would, with `cfg` given directly.
  call = mod: cfg: mod {
    inherit (stub) lib pkgs;
    config = { services.vigil = cfg; vigil.appliance = cfg; };
  };
  base = {
    enable = true;
    package = "/nix/store/stub-vigil";
    operators = [ 42 ];
    agents = [ { id = "trader"; } ];
    chainRpc = { solana = "https://api.devnet.solana.com"; };
    signedPolicy = null;
    credentials = { keystorePassphrase = "/k"; telegramBotToken = "/t"; extra = { }; };
    settings = { };
  };
  # The messages of the failing assertions for one config.
  failing = cfg:
    map (a: a.message)
      (b.filter (a: !a.assertion) (call module cfg).config.content.assertions);
  assertionCases = {
    ok = failing base;
    noOperators = failing (base // { operators = [ ]; });
    noAgents = failing (base // { agents = [ ]; });
    mainnetWithoutPolicy = failing (base // { chainRpc = { solana = "https://api.mainnet-beta.solana.com"; }; });
    mainnetWithPolicy = failing (base // {
      chainRpc = { solana = "https://api.mainnet-beta.solana.com"; };
      signedPolicy = "/etc/vigil/policy.toml";
    });
  };
  options = mod: cfg: (call mod cfg).options;
  described = tree: paths: b.all (p: b.isString (stub.optionAt tree p).description) paths;
  vigilPaths = stub.optionPaths "" (options module base);
  hardeningPaths = stub.optionPaths "" (options hardening {
    adminUser = "operator"; sshKeys = [ ]; autoUpgrade = { enable = false; flake = ""; allowReboot = false; };
  });
  moduleShape = { config = false; lib = false; pkgs = false; };
  hasMessage = needle: msgs: b.length msgs == 1 && b.match ".*${needle}.*" (b.replaceStrings [ "\n" ] [ " " ] (b.head msgs)) != null;
  checks = {
    "nixos/module.nix is a module function { config, lib, pkgs, ... }" = b.functionArgs module == moduleShape;
    "nixos/hardening.nix is a module function { config, lib, pkgs, ... }" = b.functionArgs hardening == moduleShape;
    "nixos/package.nix takes { lib, rustPlatform }" = b.functionArgs (import ../../nixos/package.nix) == { lib = false; rustPlatform = false; };
    "nixos/tests/vm.nix takes { pkgs, vigilModule }" = b.functionArgs (import ../../nixos/tests/vm.nix) == { pkgs = false; vigilModule = false; };
    "flake.nix outputs take { self, nixpkgs }" = b.functionArgs (import ../../flake.nix).outputs == { self = false; nixpkgs = false; };
    "flake.nix follows a nixpkgs branch" = b.isString (import ../../flake.nix).inputs.nixpkgs.url;
    "every services.vigil option has a description" = described (options module base) vigilPaths;
    "a complete config passes every assertion" = assertionCases.ok == [ ];
    "no operator ids fails, naming services.vigil.operators" = hasMessage "services.vigil.operators is empty.*" assertionCases.noOperators;
    "no agents fails, naming services.vigil.agents" = hasMessage "services.vigil.agents is empty.*" assertionCases.noAgents;
    "mainnet without a signed policy fails, naming signedPolicy" = hasMessage ".*mainnet.*signedPolicy is not set.*" assertionCases.mainnetWithoutPolicy;
    "mainnet with a signed policy passes" = assertionCases.mainnetWithPolicy == [ ];
    "the files the module copies exist" = b.all b.pathExists [
      ../../systemd/vigil-signer.service
      ../../systemd/vigil-signer.socket
      ../../systemd/vigil-orchestrator.service
      (../../systemd + "/vigil-import@.service")
      ../../systemd/udev/70-vigil-keys.rules
      ../../systemd/tmpfiles.d/vigil.conf
    ];
  };
in
{
  # Names of the checks that do not hold; empty when all pass.
  failures = b.filter (name: !checks.${name}) (b.attrNames checks);
  checked = b.length (b.attrNames checks);
  # Every option path, for the comparison with docs/deployment.md.
  options = vigilPaths ++ hardeningPaths;
}
