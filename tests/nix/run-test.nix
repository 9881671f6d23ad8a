# pkgs.testers.runNixOSTest in miniature: the stand-in framework, the test's own module, and
# what runNixOSTest defines (hostPkgs and node.pkgs: the package set it was called on), evaluated
# by `evalModules` (this project's model, or nixpkgs' lib.evalModules).  The package set is made
# of stand-ins whose `.override` records what it was given.
{
  evalModules,
  testModule,
  newest ? true,
}:
let
  package = name: args: {
    type = "derivation";
    inherit name args;
    outPath = "/nix/store/00000000000000000000000000000000-${name}";
    override = more: package name (args // more);
  };
  pkgs = {
    nixos-test-driver = package "upstream-driver" { };
    qemu_test = package "qemu-test" { };
    # nix/package.nix builds the replacement with callPackage ../default.nix.
    callPackage = path: args: package "callPackage-${baseNameOf (toString path)}" args;
  };
  evaluation = evalModules {
    modules = [
      (import ./test-framework.nix { inherit newest; })
      testModule
      {
        _file = "<runNixOSTest>";
        hostPkgs = pkgs;
        node.pkgs = pkgs;
      }
    ];
  };
  inherit (evaluation) config;
in
{
  driver = config.driver.name;
  driverArgs = builtins.removeAttrs config.driver.args [ "extraPythonPackages" ];
  extraPythonPackages = config.driver.args.extraPythonPackages or (_: [ ]) { };
  testScript = config.testScript or null;
  skipTypeCheck = config.skipTypeCheck;
  # What the nodes are built from: the package set runNixOSTest got, untouched.
  nodePkgsIsTheOriginal = config.nodeView.pkgs == pkgs;
  nodePkgsDriver = config.nodeView.pkgs.nixos-test-driver.name;
  hostPkgsOptionIsTheOriginal = config.hostPkgs == pkgs;
  # The QEMU the nodes' start scripts use: the same derivation as in the original set.
  nodeQemu = config.nodeView.hostPkgs.qemu_test.outPath;
  originalQemu = pkgs.qemu_test.outPath;
}
