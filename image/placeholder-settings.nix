# Placeholders so the images evaluate and build: one paper agent and operator id 1. A
# real appliance replaces these in its own flake (docs/deployment.md "Your settings"), or
# the operator edits /etc/vigil through nixos-rebuild after first boot. The assertions of
# services.vigil keep an empty operator list or agent list from ever building.
{ lib, ... }:

{
  services.vigil.operators = lib.mkDefault [ 1 ];
  services.vigil.agents = lib.mkDefault [
    {
      id = "sentinel";
      provider = "scripted";
      model = "scripted";
      temperature = 0.1;
      max_tokens = 400;
      schedule_secs = 300;
      mode = "paper";
      system_prompt = "You are Sentinel, a conservative treasury guard. When in doubt, hold.";
      risk = {
        allowed_actions = [ "transfer" "hold" ];
        max_fraction_per_tx_bps = 1000;
        peers = [ ];
      };
    }
  ];
  services.vigil.settings = {
    daily_llm_usd_cap_micros = lib.mkDefault 2000000;
    providers.scripted = {
      kind = "scripted";
      script = "/etc/vigil/scripted-replies.toml";
      prices = { prompt_micros_per_mtok = 0; completion_micros_per_mtok = 0; };
    };
  };
  environment.etc."vigil/scripted-replies.toml".text = ''
    [default]
    replies = ['{"action":"hold","confidence":0.5,"reasoning":"Placeholder configuration: holding until the operator configures agents."}']
  '';
}
