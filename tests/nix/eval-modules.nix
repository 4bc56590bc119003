# Evaluated by tests/check-nix.sh with `nix-instantiate --eval --strict --json`, no
# nixpkgs needed: the module files are functions of the expected arguments, their option
# trees (names, descriptions), and services.vigil's assertions for a table of configs.
let
  b = builtins;
  stub = import ./stub.nix;
  module = import ../../nixos/module.nix;
  hardening = import ../../nixos/hardening.nix;
  minipc = import ../../image/minipc.nix;
  tpm = import ../../image/tpm.nix;

  # The module called like the NixOS module system would, with `cfg` given directly.
  call = mod: cfg: mod {
    inherit (stub) lib pkgs;
    config = {
      services.vigil = cfg;
      vigil.appliance = cfg;
      users.allowNoPasswordLogin = cfg.allowNoPasswordLogin or false;
    };
    modulesPath = "/nix/store/stub-nixpkgs/nixos/modules";
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
    approver = { enable = true; operators = [ 42 ]; botToken = "/a"; settings = { }; };
    backup = { enable = false; repository = ""; passwordFile = "/b"; onCalendar = "daily"; };
  };
  # The messages of the failing assertions for one config.
  failing = cfg:
    map (a: a.message)
      (b.filter (a: !a.assertion) (call module cfg).config.content.assertions);
  assertionCases = {
    ok = failing base;
    noOperators = failing (base // { operators = [ ]; });
    noAgents = failing (base // { agents = [ ]; });
    noApprovers = failing (base // { approver = base.approver // { operators = [ ]; }; });
    noApproverNeeded = failing (base // { approver = base.approver // { enable = false; operators = [ ]; }; });
    backupWithoutRepository = failing (base // { backup = base.backup // { enable = true; }; });
    backupWithRepository = failing (base // { backup = base.backup // { enable = true; repository = "rest:http://127.0.0.1:8000/"; }; });
    mainnetWithoutPolicy = failing (base // { chainRpc = { solana = "https://api.mainnet-beta.solana.com"; }; });
    mainnetWithPolicy = failing (base // {
      chainRpc = { solana = "https://api.mainnet-beta.solana.com"; };
      signedPolicy = "/etc/vigil/policy.toml";
    });
  };
  options = mod: cfg: (call mod cfg).options;
  # The image modules' settings: vigil.appliance.* as one attrset, like `cfg` above.
  appliance = {
    adminUser = "operator";
    sshKeys = [ "ssh-ed25519 AAAA test" ];
    autoUpgrade = { enable = false; flake = ""; allowReboot = false; };
    release = { version = "1"; updateUrl = null; publicKeyring = null; };
    tpm = { unlock = "pin"; pcrPublicKey = null; };
  };
  failingIn = mod: cfg: map (a: a.message) (b.filter (a: !a.assertion) (call mod cfg).config.assertions);
  minipcCases = {
    ok = failingIn minipc appliance;
    noKey = failingIn minipc (appliance // { sshKeys = [ ]; });
    urlWithoutKeyring = failingIn minipc (appliance // { release = appliance.release // { updateUrl = "https://u.invalid/"; }; });
    urlWithKeyring = failingIn minipc (appliance // { release = { version = "1"; updateUrl = "https://u.invalid/"; publicKeyring = "/k.gpg"; }; });
  };
  tpmCases = {
    pin = failingIn tpm appliance;
    signedWithoutKey = failingIn tpm (appliance // { tpm = { unlock = "signed-pcr"; pcrPublicKey = null; }; });
    signedWithKey = failingIn tpm (appliance // { tpm = { unlock = "signed-pcr"; pcrPublicKey = "/pcr.pem"; }; });
  };
  # Every /usr/bin/NAME in the shipped units is in nixos/unit-programs.nix: the table the
  # module's unit derivation substitutes from (a missing one fails that build, not this CI).
  unitFiles = b.filter (n: b.match ".*[.](service|socket)" n != null) (b.attrNames (b.readDir ../../systemd));
  programsNamed = b.concatLists (map
    (n: map b.head (b.filter b.isList (b.split "/usr/bin/([A-Za-z0-9._-]+)" (b.readFile (../../systemd + "/${n}")))))
    unitFiles);
  programTable = import ../../nixos/unit-programs.nix;
  missingPrograms = b.filter (p: !(programTable ? ${p})) programsNamed;
  flake = import ../../flake.nix;
  # The outputs that need no nixpkgs (modules, lib), with the stub's lib.
  flakeOutputs = flake.outputs { self = flakeOutputs; nixpkgs = { inherit (stub) lib; }; };
  described = tree: paths: b.all (p: b.isString (stub.optionAt tree p).description) paths;
  vigilPaths = stub.optionPaths "" (options module base);
  hardeningPaths = stub.optionPaths "" (options hardening appliance);
  imagePaths = stub.optionPaths "" (options minipc appliance) ++ stub.optionPaths "" (options tpm appliance);
  moduleShape = { config = false; lib = false; pkgs = false; };
  hasMessage = needle: msgs: b.length msgs == 1 && b.match ".*${needle}.*" (b.replaceStrings [ "\n" ] [ " " ] (b.head msgs)) != null;
  checks = {
    "nixos/module.nix is a module function { config, lib, pkgs, ... }" = b.functionArgs module == moduleShape;
    "nixos/hardening.nix is a module function { config, lib, pkgs, ... }" = b.functionArgs hardening == moduleShape;
    "image/minipc.nix is a module function { config, lib, pkgs, modulesPath, ... }" = b.functionArgs minipc == moduleShape // { modulesPath = false; };
    "image/tpm.nix and image/update.nix are module functions" = b.functionArgs tpm == moduleShape && b.functionArgs (import ../../image/update.nix) == moduleShape;
    "image/vps.nix and image/ceremony.nix take modulesPath" = b.all (f: b.functionArgs (import f) == moduleShape // { modulesPath = false; }) [ ../../image/vps.nix ../../image/ceremony.nix ];
    "nixos/tests/update.nix takes { pkgs, appliance, minipc }" = b.functionArgs (import ../../nixos/tests/update.nix) == { pkgs = false; appliance = false; minipc = false; };
    "every option of the image modules has a description" = described (options minipc appliance) (stub.optionPaths "" (options minipc appliance)) && described (options tpm appliance) (stub.optionPaths "" (options tpm appliance));
    "the hardening passes with an SSH key" = failingIn hardening appliance == [ ];
    "the hardening without an SSH key fails, naming vigil.appliance.sshKeys" = hasMessage "vigil.appliance.sshKeys is empty.*" (failingIn hardening (appliance // { sshKeys = [ ]; }));
    "the hardening without a key passes where cloud-init brings it (allowNoPasswordLogin)" = failingIn hardening (appliance // { sshKeys = [ ]; allowNoPasswordLogin = true; }) == [ ];
    "a mini-PC with an SSH key passes its assertions" = minipcCases.ok == [ ];
    "a mini-PC without an SSH key fails, naming vigil.appliance.sshKeys" = hasMessage "vigil.appliance.sshKeys is empty.*" minipcCases.noKey;
    "an update URL without the release key fails, naming publicKeyring" = hasMessage ".*updateUrl is set but.*publicKeyring.*" minipcCases.urlWithoutKeyring;
    "an update URL with the release key passes" = minipcCases.urlWithKeyring == [ ];
    "TPM unlock pin passes; signed-pcr needs pcrPublicKey" = tpmCases.pin == [ ] && tpmCases.signedWithKey == [ ] && hasMessage ".*signed-pcr.*needs vigil.appliance.tpm.pcrPublicKey.*" tpmCases.signedWithoutKey;
    "every /usr/bin program the units name is in nixos/unit-programs.nix" = programsNamed != [ ] && missingPrograms == [ ];
    "flake.nix exports the image modules and lib.appliance for an operator's flake" =
      b.all (n: flakeOutputs.nixosModules ? ${n}) [ "default" "hardening" "vps" "minipc" "ceremony" ]
      && b.isFunction flakeOutputs.lib.appliance
      && flakeOutputs.nixosModules.minipc == ../../image/minipc.nix;
    "nixos/package.nix takes { lib, rustPlatform }" = b.functionArgs (import ../../nixos/package.nix) == { lib = false; rustPlatform = false; };
    "nixos/tests/vm.nix takes { pkgs, vigilModule }" = b.functionArgs (import ../../nixos/tests/vm.nix) == { pkgs = false; vigilModule = false; };
    "flake.nix outputs take { self, nixpkgs }" = b.functionArgs (import ../../flake.nix).outputs == { self = false; nixpkgs = false; };
    "flake.nix follows a nixpkgs branch" = b.isString (import ../../flake.nix).inputs.nixpkgs.url;
    "every services.vigil option has a description" = described (options module base) vigilPaths;
    "a complete config passes every assertion" = assertionCases.ok == [ ];
    "no operator ids fails, naming services.vigil.operators" = hasMessage "services.vigil.operators is empty.*" assertionCases.noOperators;
    "no agents fails, naming services.vigil.agents" = hasMessage "services.vigil.agents is empty.*" assertionCases.noAgents;
    "an approver without operators fails, naming services.vigil.approver.operators" = hasMessage "services.vigil.approver.operators is empty.*" assertionCases.noApprovers;
    "no approver needs no approver operators" = assertionCases.noApproverNeeded == [ ];
    "mainnet without a signed policy fails, naming signedPolicy" = hasMessage ".*mainnet.*signedPolicy is not set.*" assertionCases.mainnetWithoutPolicy;
    "mainnet with a signed policy passes" = assertionCases.mainnetWithPolicy == [ ];
    "a backup without a repository fails, naming backup.repository" = hasMessage ".*services.vigil.backup.repository is empty.*" assertionCases.backupWithoutRepository;
    "a backup with a repository passes" = assertionCases.backupWithRepository == [ ];
    "the files the module copies exist" = b.all b.pathExists [
      ../../systemd/vigil-signer.service
      ../../systemd/vigil-signer.socket
      ../../systemd/vigil-orchestrator.service
      ../../systemd/vigil-approver.service
      (../../systemd + "/vigil-import@.service")
      ../../systemd/udev/70-vigil-keys.rules
      ../../systemd/tmpfiles.d/vigil.conf
      ../../systemd/vigil-health.service
      ../../nixos/install-units.sh
      ../../image/partitions.nix
      ../../image/sysupdate.nix
    ];
  };
in
{
  # Names of the checks that do not hold; empty when all pass.
  failures = b.filter (name: !checks.${name}) (b.attrNames checks);
  checked = b.length (b.attrNames checks);
  # Every option path, for the comparison with docs/deployment.md.
  options = vigilPaths ++ hardeningPaths ++ imagePaths;
  # Named in the failure list when the table check fails.
  inherit missingPrograms;
}
