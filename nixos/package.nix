# The appliance's binaries as one package: vigil-signer, vigil-orchestrator, vigil-approver
# and vigil-ceremony (for the ceremony image), built from the committed
# Cargo.lock. Not shipped: `vigil` (the demo CLI, which links an in-process Solana runtime),
# `vigil-sandbox-probe` and `vigil-approver-probe` (test helpers that try to break out of
# the sandbox).
# Tests are not run here: they need root, landlock and seccomp and run in CI (tests/run)
# and in nixos/tests/vm.nix.
{ lib, rustPlatform }:

let
  workspace = builtins.fromTOML (builtins.readFile ../Cargo.toml);
in
rustPlatform.buildRustPackage {
  pname = "vigil";
  inherit (workspace.workspace.package) version;

  # Flakes copy only git-tracked files; cleanSource also drops result links and editor files.
  # node_modules holds the npm test peers and fixtures (some not Apache-compatible, e.g. the
  # BUSL-1.1 Aave contracts): never part of the package source (docs/supply-chain.md).
  src = lib.cleanSourceWith {
    src = lib.cleanSource ../.;
    filter = path: _type: !(builtins.elem (baseNameOf path) [ "target" "node_modules" ]);
  };
  cargoLock.lockFile = ../Cargo.lock;

  # The litesvm/agave crates (demo and tests only) declare rust-version 1.97.1 but build
  # with older compilers (BUILD-NOTES); they are not built here, but --ignore-rust-version
  # keeps the build independent of that. The workspace itself needs rustc >= its
  # rust-version (1.95): use a nixpkgs whose rustc is that new.
  cargoBuildFlags = [ "-p" "vigil-signer" "-p" "vigil-orchestrator" "-p" "vigil-approver" "-p" "vigil-ceremony" "--bins" "--ignore-rust-version" ];
  doCheck = false;

  postInstall = ''
    rm -f $out/bin/vigil-sandbox-probe $out/bin/vigil-approver-probe
    # The backup driver (POSIX sh; restic comes from the unit's PATH, set by the module).
    install -m 0755 ${../systemd/bin/vigil-backup} $out/bin/vigil-backup
    mkdir -p $out/share/doc/vigil
    cp ${../docs}/*.md $out/share/doc/vigil/
  '';

  meta = {
    description = "Hardened appliance letting LLM agents use crypto wallets while keys stay in a confined signer";
    license = lib.licenses.asl20;
    platforms = lib.platforms.linux;
    mainProgram = "vigil-orchestrator";
  };
}
