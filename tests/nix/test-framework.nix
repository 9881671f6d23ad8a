# A stand-in for the parts of nixpkgs' NixOS test framework (nixos/lib/testing) that decide
# which driver a test runs and which package sets its nodes see, as nixpkgs declares them
# (read from nixos/lib/testing/driver.nix, pkgs.nix, nodes.nix and pkgs.testers.runNixOSTest):
#
# - `hostPkgs` is a raw option; the module argument `hostPkgs` is `config.hostPkgs` defined at
#   the default priority (100), so a stronger definition of `_module.args.hostPkgs` replaces it;
# - `pythonTestDriverPackage` is read-only and defaults to the argument's `nixos-test-driver`;
# - the test's driver is that package `.override`n with enableOCR, extraPythonPackages,
#   qemu_pkg and enableNspawn;
# - each node's QEMU comes from the `hostPkgs` argument (virtualisation.host.pkgs) and its
#   own packages from `node.pkgs`, which runNixOSTest sets to the package set it was called on.
#
# `newest = false` gives a framework from before pythonTestDriverPackage, which builds its
# driver from a path (hostPkgs.callPackage ../test-driver) and declares no such option.
{ newest ? true }:
{
  config,
  lib,
  hostPkgs,
  ...
}:
let
  inherit (lib) mkOption types;
  overrides = {
    inherit (config) enableOCR extraPythonPackages;
    qemu_pkg = config.qemu.package;
    enableNspawn = config.containers != { };
  };
in
{
  _file = "<stand-in for nixos/lib/testing>";
  options =
    {
      hostPkgs = mkOption { type = types.raw; };
      driver = mkOption { type = types.raw; };
      qemu.package = mkOption {
        type = types.package;
        default = hostPkgs.qemu_test;
      };
      enableOCR = mkOption {
        type = types.bool;
        default = false;
      };
      extraPythonPackages = mkOption {
        type = types.functionTo (types.listOf types.raw);
        default = _: [ ];
      };
      containers = mkOption {
        type = types.attrsOf types.raw;
        default = { };
      };
      testScript = mkOption { type = types.str; };
      skipTypeCheck = mkOption {
        type = types.bool;
        default = false;
      };
      skipLint = mkOption {
        type = types.bool;
        default = false;
      };
      node.pkgs = mkOption {
        type = types.nullOr types.raw;
        default = null;
      };
      # What a node sees, reduced to two values: its host's package set (QEMU, the start
      # script) and the package set its system is built from.
      nodeView = mkOption { type = types.raw; };
    }
    // lib.optionalAttrs newest {
      pythonTestDriverPackage = mkOption {
        type = types.package;
        default = hostPkgs.nixos-test-driver;
        readOnly = true;
      };
    };

  config = {
    _module.args.hostPkgs = lib.mkOverride lib.modules.defaultOverridePriority config.hostPkgs;
    _module.args.pkgs = hostPkgs;
    driver =
      if newest then
        config.pythonTestDriverPackage.override overrides
      else
        hostPkgs.callPackage "/nixpkgs/nixos/lib/test-driver" overrides;
    nodeView = {
      hostPkgs = hostPkgs;
      pkgs = config.node.pkgs;
    };
  };
}
