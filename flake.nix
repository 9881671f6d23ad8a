{
  description = "A drop-in replacement for the NixOS test driver";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

  outputs =
    { self, nixpkgs }:
    let
      systems = [
        "x86_64-linux"
        "aarch64-linux"
      ];
      forAllSystems = f: nixpkgs.lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});
    in
    {
      packages = forAllSystems (pkgs: {
        default = import ./nix/package.nix { inherit pkgs; };
      });

      overlays = {
        # Adds the package as `nixos-test-driver-replacement`.
        default = final: prev: {
          nixos-test-driver-replacement = import ./nix/package.nix { pkgs = final; };
        };
        # Replaces nixpkgs' driver for every test built from this package set (the framework's
        # `pythonTestDriverPackage` defaults to `hostPkgs.nixos-test-driver`).
        replaceUpstream = final: prev: {
          nixos-test-driver = import ./nix/package.nix { pkgs = final; };
        };
      };

      # For test modules: `imports = [ inputs.<this flake>.nixosTestModules.default ];`
      nixosTestModules.default = ./nix/module.nix;

      lib.typecheck = pkgs: import ./nix/typecheck.nix { inherit pkgs; };
    };
}
