# The appliance's operator hardening, on by default in every Vigil image (image/*.nix) and
# available to existing hosts as nixosModules.hardening: SSH with keys only, no root
# login, no passwords at all, a firewall with only SSH open, fail2ban on sshd, optional
# automatic upgrades from the operator's flake, and a few kernel knobs.
{ config, lib, pkgs, ... }:

let
  cfg = config.vigil.appliance;
in
{
  options.vigil.appliance = {
    adminUser = lib.mkOption {
      type = lib.types.str;
      default = "operator";
      description = "The one login user (wheel, SSH keys only, no password).";
    };

    sshKeys = lib.mkOption {
      type = lib.types.listOf lib.types.singleLineStr;
      default = [ ];
      description = ''
        SSH public keys of the admin user, the only way in. Required, except on the VPS image
        where the key comes at first boot from the provider (cloud-init, image/vps.nix).
      '';
    };

    autoUpgrade = {
      enable = lib.mkEnableOption "automatic upgrades from the operator's flake (security fixes)";
      flake = lib.mkOption {
        type = lib.types.str;
        default = "";
        example = "github:example/vigil-fleet#appliance";
        description = "The flake output to upgrade to (system.autoUpgrade.flake).";
      };
      allowReboot = lib.mkOption {
        type = lib.types.bool;
        default = false;
        description = "Reboot when a new kernel or initrd arrives (inside 03:00-05:00).";
      };
    };
  };

  config = {
    assertions = [
      {
        # Said here in Vigil's terms before nixpkgs' own lock-out assertion says it in its.
        assertion = cfg.sshKeys != [ ] || config.users.allowNoPasswordLogin;
        message = ''
          vigil.appliance.sshKeys is empty: with no passwords anywhere, nobody could log in.
          Add your SSH public key, e.g. vigil.appliance.sshKeys = [ "ssh-ed25519 AAAA... you@laptop" ];
          (On the VPS image the key comes from the provider through cloud-init at first boot;
          image/vps.nix says so with users.allowNoPasswordLogin.)
        '';
      }
      {
        assertion = !cfg.autoUpgrade.enable || cfg.autoUpgrade.flake != "";
        message = "vigil.appliance.autoUpgrade.enable needs vigil.appliance.autoUpgrade.flake (the flake output to upgrade to).";
      }
    ];

    # Accounts: declared here only; nobody has a password.
    users.mutableUsers = false;
    users.users.root.hashedPassword = "!";
    users.users.${cfg.adminUser} = {
      isNormalUser = true;
      extraGroups = [ "wheel" ];
      hashedPassword = "!";
      openssh.authorizedKeys.keys = cfg.sshKeys;
    };
    # There is no password to ask for; wheel is the SSH-key holder.
    security.sudo.wheelNeedsPassword = false;
    nix.settings.allowed-users = [ "@wheel" ];
    nix.settings.trusted-users = [ "@wheel" ];

    services.openssh = {
      enable = true;
      openFirewall = true;
      settings = {
        PasswordAuthentication = false;
        KbdInteractiveAuthentication = false;
        PermitRootLogin = "no";
        AllowUsers = [ cfg.adminUser ];
        X11Forwarding = false;
        MaxAuthTries = 3;
      };
    };

    # Only SSH is open (openssh.openFirewall adds its port); nothing else is listed, so
    # everything else is dropped. Vigil's daemons listen on no TCP/UDP port at all.
    networking.firewall = {
      enable = true;
      allowPing = false;
      logRefusedConnections = false;
    };

    # Brute-force protection: sshd is fail2ban's default jail.
    services.fail2ban = {
      enable = true;
      maxretry = 5;
      bantime = "1h";
      bantime-increment.enable = true;
    };

    system.autoUpgrade = lib.mkIf cfg.autoUpgrade.enable {
      enable = true;
      flake = cfg.autoUpgrade.flake;
      allowReboot = cfg.autoUpgrade.allowReboot;
      rebootWindow = { lower = "03:00"; upper = "05:00"; };
      dates = "04:00";
      randomizedDelaySec = "45min";
    };

    boot.kernel.sysctl = {
      "kernel.kptr_restrict" = 2;
      "kernel.dmesg_restrict" = 1;
      "kernel.unprivileged_bpf_disabled" = 1;
      "kernel.yama.ptrace_scope" = 2;
      "net.core.bpf_jit_harden" = 2;
      "fs.protected_fifos" = 2;
      "fs.protected_regular" = 2;
    };
    # No core dumps anywhere on the appliance (the signer forbids its own too).
    systemd.coredump.enable = false;
    services.journald.extraConfig = ''
      Storage=persistent
      SystemMaxUse=500M
    '';
  };
}
