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
    package = lib.mkOption {
      type = lib.types.package;
      default = import ./package.nix { pkgs = hostPkgs; };
      defaultText = lib.literalExpression "the replacement driver built with hostPkgs";
      description = "The replacement driver's package (must accept nixpkgs' `.override` arguments).";
    };
  };

  config = lib.mkIf (cfg.implementation == "replacement") {
    pythonTestDriverPackage = cfg.package;
  };
}
