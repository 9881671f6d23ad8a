# A small model of nixpkgs' module system (lib.evalModules), written for this project's tests
# because no nixpkgs checkout is available where they run.  It keeps the rules that decide
# whether a module can swap the test driver, as nixpkgs' lib/modules.nix applies them:
#
# - an option's default counts as a definition (at mkOptionDefault priority, 1500);
# - a read-only option with more than one definition is an error, and that count is taken
#   before mkIf/mkMerge are resolved: `mkIf false` and `mkForce` definitions count too;
# - mkIf, mkMerge and mkOverride are pushed down through attribute sets to the options;
#   mkIf and mkMerge are resolved per option, then only the definitions of the highest
#   priority (lowest number) are kept, and merged by the option's type;
# - a module function gets `lib`, `config`, `options`, the specialArgs, and every other
#   argument it names from `config._module.args` (specialArgs win), lazily;
# - `_module.args` is a lazy attribute set of raw values, merged per attribute;
# - `config` of the result is checked: defining an undeclared option is an error.
#
# tests/unit/test_nix_module.py runs the same stand-in test framework under this model and,
# when NIXPKGS names a checkout, under nixpkgs' own lib.evalModules.
let
  inherit (builtins)
    attrNames
    concatMap
    concatStringsSep
    filter
    foldl'
    functionArgs
    groupBy
    head
    isAttrs
    isBool
    isFunction
    isList
    isPath
    isString
    length
    listToAttrs
    mapAttrs
    tail
    toJSON
    ;

  is = kind: value: isAttrs value && (value._type or null) == kind;
  showLoc = concatStringsSep ".";
  unique = list: attrNames (listToAttrs (map (name: { inherit name; value = null; }) list));

  showValue =
    value:
    if isAttrs value && (value.type or null) == "derivation" then
      "<derivation ${value.name}>"
    else if isString value || isBool value || value == null then
      toJSON value
    else if isFunction value then
      "<function>"
    else
      "<${builtins.typeOf value}>";
  showDefs = defs: concatStringsSep "" (map (d: "\n- In `${d.file}': ${d.shown}") defs);

  # Option types: how a list of definitions (already resolved and filtered) becomes a value.
  mkType =
    name: check: merge:
    {
      inherit name check merge;
    };
  one =
    loc: defs:
    if length defs == 1 then
      (head defs).value
    else
      throw "The option `${showLoc loc}' is defined multiple times while it's expected to be unique.${
        showDefs (map (d: d // { shown = showValue d.value; }) defs)
      }";
  equal =
    loc: defs:
    let
      first = (head defs).value;
    in
    if builtins.all (d: d.value == first) defs then
      first
    else
      throw "The option `${showLoc loc}' has conflicting definition values:${
        showDefs (map (d: d // { shown = showValue d.value; }) defs)
      }";
  attrsMerge =
    lazy: element: loc: defs:
    let
      names = unique (concatMap (d: attrNames d.value) defs);
      at =
        name:
        resolve (loc ++ [ name ]) element (
          concatMap (d: if d.value ? ${name} then [ (d // { value = d.value.${name}; }) ] else [ ]) defs
        );
      kept = if lazy then names else filter (name: (at name).isDefined) names;
    in
    listToAttrs (
      map (name: {
        inherit name;
        value = (at name).value;
      }) kept
    );

  types = {
    raw = mkType "raw" (_: true) one;
    anything = mkType "anything" (_: true) equal;
    package = mkType "package" (v: (v.type or null) == "derivation" || isPath v || isString v) one;
    str = mkType "str" isString equal;
    bool = mkType "bool" isBool equal;
    int = mkType "int" builtins.isInt equal;
    enum = values: mkType "one of ${toJSON values}" (v: builtins.elem v values) equal;
    nullOr =
      t:
      mkType "null or ${t.name}" (v: v == null || t.check v) (
        loc: defs: if builtins.all (d: d.value == null) defs then null else t.merge loc defs
      );
    functionTo = t: mkType "function that evaluates to a(n) ${t.name}" isFunction one;
    listOf = t: mkType "list of ${t.name}" isList (loc: defs: concatMap (d: d.value) defs);
    attrsOf = t: mkType "attribute set of ${t.name}" isAttrs (attrsMerge false t);
    lazyAttrsOf = t: mkType "lazy attribute set of ${t.name}" isAttrs (attrsMerge true t);
  };

  # mkIf and mkMerge resolved; the override left on the value for the priority filter.
  discharge =
    loc: value:
    if is "merge" value then
      concatMap (discharge loc) value.contents
    else if is "if" value then
      if !isBool value.condition then
        throw "mkIf called with a non-Boolean condition (option `${showLoc loc}')"
      else if value.condition then
        discharge loc value.content
      else
        [ ]
    else
      [ value ];

  # Definitions -> { isDefined, highestPrio, value }.
  resolve =
    loc: type: defs:
    let
      resolved = concatMap (d: map (value: d // { inherit value; }) (discharge loc d.value)) defs;
      priority = d: if is "override" d.value then d.value.priority else lib.modules.defaultOverridePriority;
      highestPrio = foldl' (p: d: if priority d < p then priority d else p) 9999 resolved;
      strip = d: if is "override" d.value then d // { value = d.value.content; } else d;
      kept = map strip (filter (d: priority d == highestPrio) resolved);
      checked = map (
        d:
        if type.check d.value then
          d
        else
          throw "A definition for option `${showLoc loc}' is not of type `${type.name}'. In `${d.file}': ${showValue d.value}"
      ) kept;
    in
    {
      isDefined = kept != [ ];
      inherit highestPrio;
      value =
        if kept == [ ] then
          throw "The option `${showLoc loc}' was accessed but has no value defined. Try setting the option."
        else
          type.merge loc checked;
    };

  lib = {
    inherit types;
    mkOption = attrs: attrs // { _type = "option"; };
    optionalAttrs = condition: attrs: if condition then attrs else { };
    mkIf = condition: content: {
      _type = "if";
      inherit condition content;
    };
    mkMerge = contents: {
      _type = "merge";
      inherit contents;
    };
    mkOverride = priority: content: {
      _type = "override";
      inherit priority content;
    };
    mkOptionDefault = lib.mkOverride 1500;
    mkDefault = lib.mkOverride 1000;
    mkForce = lib.mkOverride 50;
    modules.defaultOverridePriority = 100;
    literalExpression = text: {
      _type = "literalExpression";
      inherit text;
    };
    literalMD = text: {
      _type = "literalMD";
      inherit text;
    };
  };

  # Where a module's config puts values for `loc`, the properties on the way pushed down.
  definitionsAt =
    loc: value:
    if loc == [ ] then
      [ value ]
    else if is "merge" value then
      concatMap (definitionsAt loc) value.contents
    else if is "if" value then
      map (lib.mkIf value.condition) (definitionsAt loc value.content)
    else if is "override" value then
      map (lib.mkOverride value.priority) (definitionsAt loc value.content)
    else if isAttrs value && value ? ${head loc} then
      definitionsAt (tail loc) value.${head loc}
    else
      [ ];

  # Every path a module's config defines, down to the first declared option on it.
  definedPaths =
    declared: prefix: value:
    if declared prefix then
      [ ]
    else if is "merge" value then
      concatMap (definedPaths declared prefix) value.contents
    else if is "if" value || is "override" value then
      definedPaths declared prefix value.content
    else if isAttrs value then
      concatMap (name: definedPaths declared (prefix ++ [ name ]) value.${name}) (attrNames value)
    else
      [ prefix ];

  evalModules =
    {
      modules,
      specialArgs ? { },
    }:
    let
      internal = {
        _file = "<module system>";
        options._module.args = lib.mkOption { type = types.lazyAttrsOf types.raw; };
      };

      argsFor =
        f:
        {
          inherit lib config options;
        }
        // specialArgs
        // mapAttrs (name: _: specialArgs.${name} or config._module.args.${name}) (
          removeAttrs (functionArgs f) [ "lib" "config" "options" ]
        );

      collect =
        file: module:
        let
          loaded = if isPath module then import module else module;
          fileName = if isPath module then toString module else file;
          body = if isFunction loaded then loaded (argsFor loaded) else loaded;
          named = body._file or fileName;
          structured = body ? options || body ? config;
          normal = {
            file = named;
            options = body.options or { };
            config = if structured then body.config or { } else removeAttrs body [ "imports" "_file" "key" ];
          };
        in
        [ normal ] ++ concatMap (collect named) (body.imports or [ ]);

      all = concatMap (collect "<unknown file>") ([ internal ] ++ modules);

      declarationsIn =
        file: prefix: tree:
        if is "option" tree then
          [
            {
              loc = prefix;
              option = tree;
              inherit file;
            }
          ]
        else
          concatMap (name: declarationsIn file (prefix ++ [ name ]) tree.${name}) (attrNames tree);
      declarations = concatMap (m: declarationsIn m.file [ ] m.options) all;
      declaredAt = groupBy (d: showLoc d.loc) declarations;
      isDeclared = loc: declaredAt ? ${showLoc loc};

      evalOption =
        decl:
        let
          inherit (decl) loc option;
          given = concatMap (
            m:
            map (value: {
              inherit (m) file;
              inherit value;
            }) (definitionsAt loc m.config)
          ) all;
          defs =
            (
              if option ? default then
                [
                  {
                    inherit (decl) file;
                    value = lib.mkOptionDefault option.default;
                  }
                ]
              else
                [ ]
            )
            ++ given;
          shown = map (
            d:
            d
            // {
              shown =
                let
                  alone = resolve loc option.type [ d ];
                in
                if alone.isDefined then showValue alone.value else "<no value: mkIf false>";
            }
          ) defs;
          result = resolve loc option.type defs;
        in
        if length declaredAt.${showLoc loc} > 1 then
          throw "The option `${showLoc loc}' in `${(builtins.elemAt declaredAt.${showLoc loc} 1).file}' is already declared in `${decl.file}'."
        else if (option.readOnly or false) && length defs > 1 then
          throw "The option `${showLoc loc}' is read-only, but it's set multiple times. Definition values:${showDefs shown}"
        else
          option
          // {
            inherit (result) value isDefined highestPrio;
          };

      # The declared options as a tree of evaluated options.
      tree =
        depth: decls:
        let
          here = filter (d: length d.loc == depth) decls;
        in
        if here != [ ] then
          evalOption (head here)
        else
          mapAttrs (_: tree (depth + 1)) (groupBy (d: builtins.elemAt d.loc depth) decls);
      options = tree 0 declarations;
      valuesOf = t: if is "option" t then t.value else mapAttrs (_: valuesOf) t;
      config = valuesOf options;

      undeclared = concatMap (m: map (p: "`${showLoc p}' (in `${m.file}')") (definedPaths isDeclared [ ] m.config)) all;
      checked =
        if undeclared == [ ] then
          config
        else
          throw "The option ${head undeclared} does not exist.";
    in
    {
      config = builtins.seq (builtins.length (attrNames checked)) checked;
      inherit options;
    };
in
{
  inherit lib evalModules;
}
