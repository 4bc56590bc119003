# services.vigil: the Vigil appliance's daemons on NixOS (signer, orchestrator, approver).
#
# The hardening lives in ../systemd/ (one source of truth, checked by
# tests/check-systemd.sh); this module installs those unit files as they are, with the
# binary paths substituted, and adds only what is host-specific as drop-ins: the
# generated config file, credential paths, and the [Install] links NixOS does not take
# from packaged units. Options are typed where Vigil checks them; everything else of the
# orchestrator's TOML goes through the freeform `settings` (docs/orchestrator.md).
{ config, lib, pkgs, ... }:

let
  cfg = config.services.vigil;
  settingsFormat = pkgs.formats.toml { };

  # ../systemd/ with every /usr/bin/NAME pointing into the store, from one table
  # (./unit-programs.nix) and one script (./install-units.sh, shared with tests/boot/run
  # and tests/check-systemd.sh); the build fails on a /usr/bin path the table lacks.
  providers = {
    vigil = cfg.package;
    systemd = config.systemd.package;
  };
  providerOf = pkg: providers.${pkg} or pkgs.${pkg};
  programArgs = lib.mapAttrsToList
    (name: pkg: lib.escapeShellArg "${name}=${providerOf pkg}/bin/${name}")
    (import ./unit-programs.nix);
  units = pkgs.runCommand "vigil-systemd-units" { } ''
    ${pkgs.runtimeShell} ${./install-units.sh} ${../systemd} $out \
      --doc-dir ${cfg.package}/share/doc/vigil ${lib.concatStringsSep " " programArgs}
  '';

  # The orchestrator's config: typed options first, then the freeform settings on top.
  configFile = settingsFormat.generate "orchestrator.toml" cfg.settings;
  # The approver's config (approver/src/config.rs): the same way.
  approverConfigFile = settingsFormat.generate "approver.toml" cfg.approver.settings;

  isMainnet = url: lib.hasInfix "mainnet" url;
  mainnetRpc = lib.filter isMainnet (lib.attrValues cfg.chainRpc);
in
{
  options.services.vigil = {
    enable = lib.mkEnableOption "Vigil, the LLM-agent wallet appliance (signer, orchestrator, approver)";

    package = lib.mkOption {
      type = lib.types.package;
      defaultText = lib.literalExpression "pkgs.vigil";
      default = pkgs.vigil;
      description = "The Vigil package (vigil-signer, vigil-orchestrator, vigil-approver, vigil-ceremony).";
    };

    operators = lib.mkOption {
      type = lib.types.listOf lib.types.ints.positive;
      default = [ ];
      example = [ 123456789 ];
      description = ''
        Telegram user ids whose messages the bot obeys (`[telegram] operators`); everyone
        else gets nothing. At least one is required.
      '';
    };

    agents = lib.mkOption {
      type = lib.types.listOf settingsFormat.type;
      default = [ ];
      description = ''
        The agents (`[[agents]]` of the orchestrator's config: id, provider, model, mode,
        schedule, risk profile). Empty keeps nothing: give at least one. Every agent
        starts in paper mode unless it says `mode = "live"`.
      '';
    };

    chainRpc = lib.mkOption {
      type = lib.types.attrsOf lib.types.str;
      default = { solana = "https://api.devnet.solana.com"; };
      example = { solana = "https://api.mainnet-beta.solana.com"; };
      description = "Chain JSON-RPC endpoints by chain (`solana` becomes `solana_rpc_url`).";
    };

    signedPolicy = lib.mkOption {
      type = lib.types.nullOr lib.types.path;
      default = null;
      description = ''
        The policy signed at the offline key ceremony, as imported to the signer's state
        dir. Required before any RPC URL points at mainnet: the signer itself refuses
        mainnet unless the signed policy names it; this only makes the mistake visible at
        build time.
      '';
    };

    credentials = {
      keystorePassphrase = lib.mkOption {
        type = lib.types.path;
        default = "/etc/credstore.encrypted/vigil-keystore-passphrase";
        description = ''
          The keystore passphrase, encrypted with `systemd-creds encrypt` (TPM2 where
          present). Loaded as the signer's credential `vigil-keystore-passphrase`.
        '';
      };
      telegramBotToken = lib.mkOption {
        type = lib.types.path;
        default = "/etc/credstore.encrypted/vigil-telegram-bot-token";
        description = "The Telegram bot token, encrypted with `systemd-creds encrypt`.";
      };
      extra = lib.mkOption {
        type = lib.types.attrsOf lib.types.path;
        default = { };
        example = { vigil-openai-api-key = "/etc/credstore.encrypted/vigil-openai-api-key"; };
        description = ''
          More encrypted credentials for the orchestrator, by name (e.g. the LLM API keys
          that providers name in `api_key_credential`).
        '';
      };
    };

    journal = {
      rotateBytes = lib.mkOption {
        type = lib.types.ints.between 4096 68719476736;
        default = 67108864;
        description = ''
          The signer seals its journal's live segment once this many bytes were written after
          its checkpoint (`--journal-rotate-bytes`, docs/audit.md "Segments"); a start replays
          at most about this much.
        '';
      };
      keepSegments = lib.mkOption {
        type = lib.types.ints.unsigned;
        default = 8;
        description = "Sealed journal segments always kept (`--journal-keep-segments`).";
      };
      keepDays = lib.mkOption {
        type = lib.types.ints.between 0 36500;
        default = 90;
        description = ''
          Sealed journal segments younger than this are kept too (`--journal-keep-days`);
          older ones beyond keepSegments are deleted: the nightly backups hold them.
        '';
      };
    };

    settings = lib.mkOption {
      type = lib.types.submodule { freeformType = settingsFormat.type; };
      default = { };
      description = ''
        The orchestrator's TOML config (docs/orchestrator.md), merged over what the typed
        options set. Unknown keys are refused by the orchestrator at start.
      '';
    };

    approver = {
      enable = lib.mkOption {
        type = lib.types.bool;
        default = true;
        description = ''
          Run vigil-approver, the only process that carries the operator's codes to the
          signer (its own Telegram bot). Without it nothing above the approval threshold,
          no going live and no cap change can ever be approved: requests wait and expire.
        '';
      };
      operators = lib.mkOption {
        type = lib.types.listOf lib.types.ints.positive;
        default = cfg.operators;
        defaultText = lib.literalExpression "config.services.vigil.operators";
        description = ''
          Telegram user ids the approver's bot obeys, in their private chats only.
        '';
      };
      botToken = lib.mkOption {
        type = lib.types.path;
        default = "/etc/credstore.encrypted/vigil-approver-bot-token";
        description = ''
          The approver bot's token (a second bot, not the orchestrator's), encrypted with
          `systemd-creds encrypt`; loaded as the credential `vigil-approver-bot-token`.
        '';
      };
      settings = lib.mkOption {
        type = lib.types.submodule { freeformType = settingsFormat.type; };
        default = { };
        description = ''
          The approver's TOML config (docs/operator-guide.md, "The approver's bot"), merged
          over what the typed options set. Unknown keys are refused at start.
        '';
      };
    };
  };

  options.services.vigil.backup = {
    enable = lib.mkOption {
      type = lib.types.bool;
      default = false;
      description = ''
        Nightly encrypted offsite backups with restic (vigil-backup.timer): the orchestrator's
        state, the signer's journal with its verified head, the signed policy and /etc/vigil;
        never the keystore, the credentials or the repository password (docs/operations.md).
      '';
    };
    repository = lib.mkOption {
      type = lib.types.str;
      default = "";
      example = "rest:https://backup.example.net/vigil/";
      description = ''
        The restic repository (RESTIC_REPOSITORY). Use an append-only one (rest-server or
        `rclone serve restic --append-only`) so a compromised appliance cannot delete history.
      '';
    };
    passwordFile = lib.mkOption {
      type = lib.types.path;
      default = "/etc/credstore.encrypted/vigil-backup-password";
      description = ''
        The repository password, encrypted with `systemd-creds encrypt`; loaded as the
        credential `vigil-backup-password`. Outside every backed-up path.
      '';
    };
    onCalendar = lib.mkOption {
      type = lib.types.str;
      default = "*-*-* 02:00:00";
      description = "When the backup runs (systemd OnCalendar=), plus a random delay of up to an hour.";
    };
  };

  config = lib.mkIf cfg.enable {
    assertions = [
      {
        assertion = !cfg.backup.enable || cfg.backup.repository != "";
        message = ''
          services.vigil.backup.enable is set but services.vigil.backup.repository is empty:
          name the restic repository, e.g. "rest:https://backup.example.net/vigil/".
        '';
      }
      {
        assertion = cfg.operators != [ ];
        message = ''
          services.vigil.operators is empty: nobody could operate Vigil. Add your Telegram
          user id (ask @userinfobot), e.g. services.vigil.operators = [ 123456789 ];
        '';
      }
      {
        assertion = !cfg.approver.enable || cfg.approver.operators != [ ];
        message = "services.vigil.approver.operators is empty: nobody could approve anything.";
      }
      {
        assertion = cfg.agents != [ ];
        message = "services.vigil.agents is empty: configure at least one agent (docs/orchestrator.md).";
      }
      {
        assertion = mainnetRpc == [ ] || cfg.signedPolicy != null;
        message = ''
          services.vigil.chainRpc points at mainnet (${lib.concatStringsSep ", " mainnetRpc})
          but services.vigil.signedPolicy is not set. Run the offline key ceremony, import
          its stick, and set signedPolicy to the signed policy that names mainnet.
        '';
      }
    ];

    services.vigil.settings = {
      signer_socket = lib.mkDefault "/run/vigil/signer.sock";
      state_db = lib.mkDefault "/var/lib/vigil/orchestrator.sqlite3";
      agents = lib.mkDefault cfg.agents;
      telegram.operators = lib.mkDefault cfg.operators;
      telegram.token_credential = lib.mkDefault "vigil-telegram-bot-token";
      # Configuration generations with health-checked apply and rollback, and /build's
      # proposals checked in vigil-proposal@.service (docs/operations.md): on by default.
      generations.proposal_sandbox = lib.mkDefault "systemd";
    } // lib.optionalAttrs (cfg.chainRpc ? solana) {
      solana_rpc_url = lib.mkDefault cfg.chainRpc.solana;
    };

    services.vigil.approver.settings = {
      operators = lib.mkDefault cfg.approver.operators;
      signer_socket = lib.mkDefault "/run/vigil/signer.sock";
      state_dir = lib.mkDefault "/var/lib/vigil-approver";
      token_credential = lib.mkDefault "vigil-approver-bot-token";
    };

    environment.systemPackages = [ cfg.package ];
    environment.etc."vigil/orchestrator.toml".source = configFile;
    environment.etc."vigil/approver.toml".source = approverConfigFile;

    users.groups.vigil = { };
    users.groups.vigil-signer = { };
    # The key-ceremony importer's own user (vigil-import@.service): not a socket peer; the
    # signer's unit joins its group (SupplementaryGroups=) to read what it stages.
    users.groups.vigil-import = { };
    users.users.vigil-import = {
      isSystemUser = true;
      group = "vigil-import";
      home = "/var/lib/vigil-import";
      description = "Vigil key import";
    };
    users.users.vigil-signer = {
      isSystemUser = true;
      group = "vigil-signer";
      home = "/var/lib/vigil-signer";
      description = "Vigil signer";
    };
    users.users.vigil = {
      isSystemUser = true;
      group = "vigil";
      home = "/var/lib/vigil";
      description = "Vigil orchestrator";
    };
    # The only uid the signer takes a code from (--approver-user vigil-approver); it exists
    # even with the approver off, so the signer's unit starts unchanged.
    users.groups.vigil-approver = { };
    users.users.vigil-approver = {
      isSystemUser = true;
      group = "vigil-approver";
      home = "/var/lib/vigil-approver";
      description = "Vigil approver";
    };

    systemd.packages = [ units ];
    systemd.tmpfiles.packages = [ units ];
    services.udev.packages = [ units ];

    # NixOS does not follow [Install] of packaged units: name the links here.
    systemd.sockets.vigil-signer.wantedBy = [ "sockets.target" ];
    # The proposal sandbox (docs/operations.md): /build checks each proposal in a
    # vigil-proposal@.service started by a connection to this socket.
    systemd.sockets.vigil-proposal.wantedBy = [ "sockets.target" ];
    systemd.services.vigil-signer = {
      wantedBy = [ "multi-user.target" ];
      # The journal's rotation and retention (read by the signer's flags from these).
      environment = {
        VIGIL_JOURNAL_ROTATE_BYTES = toString cfg.journal.rotateBytes;
        VIGIL_JOURNAL_KEEP_SEGMENTS = toString cfg.journal.keepSegments;
        VIGIL_JOURNAL_KEEP_DAYS = toString cfg.journal.keepDays;
      };
      # "" resets the list the unit file set, so a path set here replaces it.
      serviceConfig.LoadCredentialEncrypted = [
        ""
        "vigil-keystore-passphrase:${cfg.credentials.keystorePassphrase}"
      ];
    };
    # The check a booted release must pass (image/minipc.nix: boot counting and rollback);
    # boot-complete.target is reached only where boot counting is in effect.
    systemd.services.vigil-health = {
      requiredBy = [ "boot-complete.target" ];
    } // lib.optionalAttrs (!cfg.approver.enable) {
      # Without the approver, health does not wait for it (the unit's list, less that line).
      serviceConfig.ExecStart = [
        ""
        "+${config.systemd.package}/bin/systemctl is-active --quiet vigil-signer.service"
        "+${config.systemd.package}/bin/systemctl is-active --quiet vigil-orchestrator.service"
        "${cfg.package}/bin/vigil-signer audit-verify --state-dir /var/lib/vigil-signer"
      ];
    };
    systemd.services.vigil-approver = lib.mkIf cfg.approver.enable {
      wantedBy = [ "multi-user.target" ];
      restartTriggers = [ approverConfigFile ];
      serviceConfig.LoadCredentialEncrypted = [
        ""
        "vigil-approver-bot-token:${cfg.approver.botToken}"
      ];
    };
    environment.etc."vigil/backup.env" = lib.mkIf cfg.backup.enable {
      text = ''
        RESTIC_REPOSITORY=${cfg.backup.repository}
        VIGIL_ORCHESTRATOR_DB=${cfg.settings.state_db}
      '';
    };
    systemd.services.vigil-backup = lib.mkIf cfg.backup.enable {
      path = [ pkgs.restic pkgs.coreutils pkgs.findutils pkgs.gnused ];
      serviceConfig.LoadCredentialEncrypted = [
        ""
        "vigil-backup-password:${cfg.backup.passwordFile}"
      ];
    };
    systemd.timers.vigil-backup = lib.mkIf cfg.backup.enable {
      wantedBy = [ "timers.target" ];
      timerConfig.OnCalendar = [ "" cfg.backup.onCalendar ];
    };
    systemd.services.vigil-orchestrator = {
      wantedBy = [ "multi-user.target" ];
      restartTriggers = [ configFile ];
      serviceConfig.LoadCredentialEncrypted = [
        ""
        "vigil-telegram-bot-token:${cfg.credentials.telegramBotToken}"
      ] ++ lib.mapAttrsToList (name: path: "${name}:${path}") cfg.credentials.extra;
    };
  };

  meta.maintainers = [ ];
}
