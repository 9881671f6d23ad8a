# A module for nixpkgs' NixOS test framework (nixos/lib/testing) that selects the test driver.
#
#   pkgs.testers.runNixOSTest {
#     imports = [ ./nix/module.nix ];
#     testDriver.implementation = "replacement";   # the one line that switches a test
#     ...
#   }
#
# nixpkgs' own driver stays the default.  The switch goes through the framework's
# `pythonTestDriverPackage`, which nixpkgs overrides with enableOCR, extraPythonPackages,
# qemu_pkg and enableNspawn and runs with `--config <driver configuration> --log-level <level>`.
{
  config,
  lib,
  hostPkgs,
  ...
}:
let
  cfg = config.testDriver;
in
{
  options.testDriver = {
    implementation = lib.mkOption {
      type = lib.types.enum [
        "upstream"
        "replacement"
      ];
      default = "upstream";
      description = ''
        Which Python test driver runs the test script: nixpkgs' own ("upstream") or the
        drop-in replacement from this repository ("replacement").
      '';
    };
    steps = lib.mkOption {
      type = lib.types.nullOr (lib.types.attrsOf lib.types.anything);
      default = null;
      example = lib.literalExpression ''
        { steps = [ { action = "start_all"; } { action = "wait_for_unit"; machine = "web"; unit = "nginx.service"; } ]; }
      '';
      description = ''
        A data-driven test script (the replacement driver only): an attribute set of steps,
        passed to the driver as JSON in place of `testScript` (which it then sets).
      '';
    };
    package = lib.mkOption {
      type = lib.types.package;
      default = import ./package.nix { pkgs = hostPkgs; };
      defaultText = lib.literalExpression "the replacement driver built with hostPkgs";
      description = "The replacement driver's package (must accept nixpkgs' `.override` arguments).";
    };
  };

  config = lib.mkMerge [
    (lib.mkIf (cfg.implementation == "replacement") {
      pythonTestDriverPackage = cfg.package;
    })
    (lib.mkIf (cfg.steps != null) {
      testScript =
        if cfg.implementation == "replacement" then
          builtins.toJSON cfg.steps
        else
          throw "testDriver.steps needs testDriver.implementation = \"replacement\"";
      # A steps document is JSON, not Python: nothing for mypy or pyflakes to check.
      skipTypeCheck = lib.mkDefault true;
      skipLint = lib.mkDefault true;
    })
  ];
}
