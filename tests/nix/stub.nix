# A tiny stand-in for nixpkgs' `lib` and `pkgs`, enough to call nixos/module.nix and
# nixos/hardening.nix without nixpkgs (CI has no Nix store). The list/string functions
# the modules' logic uses are real implementations on builtins; option constructors
# return plain records so the option tree can be walked. Types are names only: this
# checks option NAMES, descriptions and the assertions' logic, not nixpkgs' type system.
let
  b = builtins;
  option = attrs: attrs // { _isOption = true; };
  type = name: { _type = "type"; inherit name; };
  lib = {
    mkOption = option;
    mkEnableOption = what: option { type = type "bool"; default = false; description = "Whether to enable ${what}."; };
    mkIf = condition: content: { _type = "if"; inherit condition content; };
    mkDefault = value: { _type = "override"; priority = 1000; content = value; };
    mkForce = value: { _type = "override"; priority = 50; content = value; };
    literalExpression = text: { _type = "literalExpression"; inherit text; };
    optionalAttrs = cond: attrs: if cond then attrs else { };
    optionals = cond: list: if cond then list else [ ];
    mkMerge = contents: { _type = "merge"; inherit contents; };
    escapeShellArg = s: "'" + b.replaceStrings [ "'" ] [ "'\\''" ] s + "'";
    filter = b.filter;
    attrValues = b.attrValues;
    concatStringsSep = b.concatStringsSep;
    mapAttrsToList = f: attrs: map (n: f n attrs.${n}) (b.attrNames attrs);
    hasInfix = infix: s: b.length (b.split (escapeRegex infix) s) > 1;
    toUpper = s: s;
    types = {
      package = type "package";
      bool = type "bool";
      str = type "str";
      singleLineStr = type "singleLineStr";
      path = type "path";
      enum = values: type "one of ${b.concatStringsSep ", " values}";
      strMatching = re: type "string matching ${re}";
      ints = { positive = type "positive int"; };
      listOf = t: type "list of ${t.name}";
      attrsOf = t: type "attrs of ${t.name}";
      nullOr = t: type "null or ${t.name}";
      submodule = m: type "submodule";
    };
  };
  escapeRegex = s: b.replaceStrings
    [ "." "*" "+" "?" "(" ")" "[" "]" "{" "}" "|" "^" "$" "\\" ]
    [ "\\." "\\*" "\\+" "\\?" "\\(" "\\)" "\\[" "\\]" "\\{" "\\}" "\\|" "\\^" "\\$" "\\\\" ]
    s;
  pkgs = {
    formats.toml = _: { type = type "toml value"; generate = name: value: "/nix/store/stub-${name}"; };
    vigil = "/nix/store/stub-vigil";
    util-linux = "/nix/store/stub-util-linux";
    coreutils = "/nix/store/stub-coreutils";
    runCommand = name: env: script: "/nix/store/stub-${name}";
    runtimeShell = "/nix/store/stub-bash/bin/bash";
    writeShellApplication = { name, ... }: "/nix/store/stub-${name}";
    writeShellScript = name: text: "/nix/store/stub-${name}";
    writeText = name: text: "/nix/store/stub-${name}";
    stdenv.hostPlatform = { efiArch = "x64"; linuxArch = "x86_64"; system = "x86_64-linux"; };
  };
  # Every option path of an options tree, e.g. [ "services.vigil.enable" ... ].
  optionPaths = prefix: tree:
    b.concatLists (map
      (name:
        let v = tree.${name}; path = if prefix == "" then name else "${prefix}.${name}";
        in if v ? _isOption then [ path ] else optionPaths path v)
      (b.attrNames tree));
  optionAt = tree: path: b.foldl' (t: n: t.${n}) tree (b.filter b.isString (b.split "\\." path));
in
{
  inherit lib pkgs optionPaths optionAt;
}
