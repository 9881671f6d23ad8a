# A module for nixpkgs' NixOS test framework (nixos/lib/testing) that selects the test driver.
#
#   pkgs.testers.runNixOSTest {
#     imports = [ ./nix/module.nix ];
#     testDriver.implementation = "replacement";   # the one line that switches a test
#     ...
#   }
#
# nixpkgs' own driver stays the default, and then this module defines nothing.
#
# How the switch works within the framework's rules: `pythonTestDriverPackage` is read-only and
# its default (`hostPkgs.nixos-test-driver`) already counts as its one definition, so no module
# may define it, not even under mkForce or a false mkIf.  What the framework does let a module
# replace is the `hostPkgs` module argument (defined at the default priority from the `hostPkgs`
# option).  With "replacement" this module gives that argument the same package set with one
# attribute changed, `nixos-test-driver`, one priority step stronger; the option `hostPkgs` and
# `node.pkgs` stay as they were, so the nodes are built from exactly the same packages (their
# QEMU is the same derivation).  The framework then builds the test's driver from ours with its
# usual `.override { enableOCR; extraPythonPackages; qemu_pkg; enableNspawn; }` and runs it with
# `--config <driver configuration> --log-level <level>`.
{
  config,
  options,
  lib,
  ...
}:
let
  cfg = config.testDriver;
  replacing = cfg.implementation == "replacement";
  withOurDriver =
    if options ? pythonTestDriverPackage then
      config.hostPkgs // { nixos-test-driver = cfg.package; }
    else
      throw ''
        testDriver.implementation = "replacement" needs a nixpkgs whose NixOS test framework takes
        its driver from the package set (the option `pythonTestDriverPackage`, defaulting to
        hostPkgs.nixos-test-driver).  This nixpkgs builds its driver from a path, so no module or
        overlay can replace it: use a newer nixpkgs, or leave testDriver.implementation unset.'';
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
        drop-in replacement from this repository ("replacement").  Only the driver changes:
        the nodes are built from the same packages either way.
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
      default = import ./package.nix { pkgs = config.hostPkgs; };
      defaultText = lib.literalExpression "the replacement driver built with the test's hostPkgs";
      description = "The replacement driver's package (must accept nixpkgs' `.override` arguments).";
    };
  };

  config = lib.mkMerge [
    {
      # The mkIf sits on the argument itself, not above `_module.args`: resolving it then never
      # stands in the way of the other module arguments.
      _module.args.hostPkgs = lib.mkIf replacing (
        lib.mkOverride (lib.modules.defaultOverridePriority - 1) withOurDriver
      );
    }
    (lib.mkIf (cfg.steps != null) {
      testScript =
        if replacing then
          builtins.toJSON cfg.steps
        else
          throw "testDriver.steps needs testDriver.implementation = \"replacement\"";
      # A steps document is JSON, not Python: nothing for mypy or pyflakes to check.
      skipTypeCheck = lib.mkDefault true;
      skipLint = lib.mkDefault true;
    })
  ];
}
