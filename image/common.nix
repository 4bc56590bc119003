# What every Vigil appliance image shares: the services.vigil module and the operator
# hardening, journald, and the machine basics the image variants build on.
{ config, lib, pkgs, ... }:

{
  imports = [
    ../nixos/module.nix
    ../nixos/hardening.nix
  ];

  services.vigil.enable = lib.mkDefault true;

  networking.hostName = lib.mkDefault "vigil";
  time.timeZone = "UTC";
  i18n.defaultLocale = "C.UTF-8";

  # Small and predictable: no documentation, no X, no default packages beyond the admin's.
  documentation.enable = false;
  environment.defaultPackages = [ ];
  environment.systemPackages = [ pkgs.sqlite ];
  programs.command-not-found.enable = false;

  # Nix: flakes for nixos-rebuild --flake; the store is optimised and collected weekly
  # (old generations stay until the operator removes them, for rollbacks).
  nix.settings.experimental-features = [ "nix-command" "flakes" ];
  nix.settings.auto-optimise-store = true;

  system.stateVersion = "25.11";
}
