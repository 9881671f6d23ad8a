# Type-check a testScript against the replacement driver, as nixpkgs checks it against its own:
#   import ./nix/typecheck.nix { inherit pkgs; } {
#     name = "my-test"; testScript = "machine.succeed('true')"; machines = [ "machine" ]; vlans = [ ];
#   }
{
  pkgs,
  driver ? import ./package.nix { inherit pkgs; },
}:
{
  name,
  testScript,
  machines,
  vlans ? [ ],
}:
pkgs.runCommand "nixos-test-typecheck-${name}"
  {
    # The driver's wrapped command runs mypy from PATH (its own Python has no mypy).
    nativeBuildInputs = [
      driver
      pkgs.mypy
    ];
    passAsFile = [ "testScript" ];
    inherit testScript;
  }
  ''
    nixos-test-driver-typecheck "$testScriptPath" \
      --machines ${pkgs.lib.escapeShellArgs machines} \
      --vlans ${pkgs.lib.escapeShellArgs (map toString vlans)}
    touch $out
  ''
