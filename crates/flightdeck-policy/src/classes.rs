//! Change classes: what kind of file a path is (docs, tests, dependencies, ...).
//!
//! Rules talk about classes (`changes_only = ["docs", "tests"]`) rather than paths so that
//! one policy fits most repositories. The built-in lists below follow common ecosystem
//! conventions; a policy's `[classes]` table adds globs to them or defines new classes.
//! Patterns use the policy flavour of [`crate::glob`].

use globset::{GlobSet, GlobSetBuilder};

use crate::glob::{self, Flavor};

/// Documentation: prose that is read, not run. Root `docs/`/`doc/` only, since a nested
/// `docs/` directory is often code (a docs server, say).
const DOCS: &[&str] = &[
    "/docs/",
    "/doc/",
    "*.md",
    "*.mdx",
    "*.markdown",
    "*.rst",
    "*.adoc",
    "*.asciidoc",
    "LICENSE",
    "LICENSE.*",
    "LICENSE-*",
    "LICENCE",
    "LICENCE.*",
    "COPYING",
    "COPYING.*",
    "NOTICE",
    "NOTICE.*",
    "AUTHORS",
    "AUTHORS.*",
    "CHANGELOG",
    "CHANGELOG.*",
    "CHANGES",
    "CHANGES.*",
    "README",
    "README.*",
    "CONTRIBUTING",
    "CONTRIBUTING.*",
    "CODE_OF_CONDUCT",
    "CODE_OF_CONDUCT.*",
    "SECURITY",
    "SECURITY.*",
];

/// Tests: test directories at any depth and the file-name conventions of the common test
/// runners (Go, pytest, Jest/Vitest, JUnit, RSpec, xUnit, ExUnit).
const TESTS: &[&str] = &[
    "tests/",
    "test/",
    "__tests__/",
    "__mocks__/",
    "spec/",
    "testdata/",
    "*_test.go",
    "*_test.py",
    "test_*.py",
    "conftest.py",
    "*_test.rs",
    "*.test.ts",
    "*.test.tsx",
    "*.test.js",
    "*.test.jsx",
    "*.test.mjs",
    "*.test.cjs",
    "*.spec.*",
    "*Test.java",
    "*Tests.java",
    "*IT.java",
    "*Test.kt",
    "*Tests.kt",
    "*_spec.rb",
    "*_test.rb",
    "*Test.cs",
    "*Tests.cs",
    "*_test.exs",
    "*_test.dart",
    "*_test.cc",
    "*_test.cpp",
];

/// Dependencies: package manifests, lock files and toolchain pins, at any depth. A change
/// here changes what code is pulled in and built.
const DEPENDENCIES: &[&str] = &[
    "Cargo.toml",
    "Cargo.lock",
    "rust-toolchain",
    "rust-toolchain.toml",
    "package.json",
    "package-lock.json",
    "npm-shrinkwrap.json",
    "pnpm-lock.yaml",
    "pnpm-workspace.yaml",
    "yarn.lock",
    ".yarnrc.yml",
    ".npmrc",
    "bun.lock",
    "bun.lockb",
    "deno.json",
    "deno.lock",
    "requirements*.txt",
    "requirements/*.txt",
    "constraints*.txt",
    "pyproject.toml",
    "poetry.lock",
    "uv.lock",
    "Pipfile",
    "Pipfile.lock",
    "setup.py",
    "setup.cfg",
    "go.mod",
    "go.sum",
    "go.work",
    "go.work.sum",
    "pom.xml",
    "build.gradle",
    "build.gradle.kts",
    "settings.gradle",
    "settings.gradle.kts",
    "gradle.lockfile",
    "libs.versions.toml",
    "Gemfile",
    "Gemfile.lock",
    "*.gemspec",
    "composer.json",
    "composer.lock",
    "mix.exs",
    "mix.lock",
    "Package.swift",
    "Package.resolved",
    "Podfile",
    "Podfile.lock",
    "*.csproj",
    "packages.lock.json",
    "Directory.Packages.props",
    "flake.nix",
    "flake.lock",
    ".gitmodules",
    ".tool-versions",
];

/// Database migrations and schema: changes that are hard to undo once applied.
const MIGRATIONS: &[&str] = &[
    "migrations/",
    "migrate/",
    "alembic/",
    "flyway/",
    "liquibase/",
    "**/db/**/*.sql",
    "**/db/schema.rb",
    "**/db/structure.sql",
    "schema.prisma",
];

/// Infrastructure: Terraform/OpenTofu, Kubernetes, Helm, containers and deploy configs.
/// `.devcontainer` is here because the workspace runtime builds and runs it.
const INFRA: &[&str] = &[
    "*.tf",
    "*.tf.json",
    "*.tfvars",
    "*.tfvars.json",
    "*.hcl",
    "terraform/",
    "infra/",
    "infrastructure/",
    "k8s/",
    "kubernetes/",
    "helm/",
    "charts/",
    "Chart.yaml",
    "Chart.lock",
    "kustomization.yaml",
    "kustomization.yml",
    "Dockerfile",
    "Dockerfile.*",
    "*.dockerfile",
    "Containerfile",
    ".dockerignore",
    "docker-compose*.yml",
    "docker-compose*.yaml",
    "compose.yml",
    "compose.yaml",
    "ansible/",
    "Pulumi.yaml",
    "Pulumi.*.yaml",
    "serverless.yml",
    "fly.toml",
    "netlify.toml",
    "vercel.json",
    ".devcontainer/",
    ".devcontainer.json",
];

/// CI and repository automation: files that run with the project's credentials or that
/// govern review itself (CODEOWNERS, flightdeck's own policy, git hooks).
const CI: &[&str] = &[
    "/.github/workflows/",
    "/.github/actions/",
    "/.github/dependabot.yml",
    "/.github/CODEOWNERS",
    "/CODEOWNERS",
    "/docs/CODEOWNERS",
    "/.gitlab-ci.yml",
    "/.gitlab/",
    "/.circleci/",
    "Jenkinsfile",
    "/azure-pipelines.yml",
    "/.azure-pipelines/",
    "/.buildkite/",
    "/.travis.yml",
    "/bitbucket-pipelines.yml",
    "/.drone.yml",
    "/appveyor.yml",
    "/.woodpecker/",
    "/.woodpecker.yml",
    "/cloudbuild.yaml",
    "/.pre-commit-config.yaml",
    "/.husky/",
    "/.githooks/",
    "/.flightdeck/",
];

/// Files that a test runner, a docs build or a package tool executes even where they sit
/// among docs or tests (`conftest.py`, Sphinx's `conf.py`, Jest's `__mocks__/`, `setup.py`,
/// build scripts and shell scripts of test fixtures). They are `source`, never `docs` or
/// `tests`, so `changes_only = ["docs", "tests"]` does not cover them: code that CI runs
/// needs an owner.
const EXECUTED: &[&str] = &[
    "conftest.py",
    "conf.py",
    "__mocks__/",
    "setup*.py",
    "setupTests.*",
    "jest.config.*",
    "jest.setup.*",
    "vitest.config.*",
    "vitest.setup.*",
    "vitest.workspace.*",
    "karma.conf.*",
    "playwright.config.*",
    "cypress.config.*",
    "pytest.ini",
    "tox.ini",
    "noxfile.py",
    "build.rs",
    "Makefile",
    "GNUmakefile",
    "makefile",
    "*.mk",
    "Justfile",
    "justfile",
    "Rakefile",
    "Taskfile.yml",
    "*.sh",
    "*.bash",
    "*.zsh",
    "*.ps1",
    ".envrc",
];

/// The marker, in a table's glob-to-class list, of an [`EXECUTED`] glob.
const EXECUTED_MARK: u8 = u8::MAX;

/// The class of every path that is in none of the other built-in classes.
pub const SOURCE_CLASS: &str = "source";

/// The built-in classes, in the order [`crate::Policy::classes_of`] reports them.
pub const BUILTIN_CLASS_NAMES: [&str; 7] = [
    "docs",
    "tests",
    "dependencies",
    "migrations",
    "infra",
    "ci",
    SOURCE_CLASS,
];

const BUILTIN_PATTERNS: [&[&str]; 6] = [DOCS, TESTS, DEPENDENCIES, MIGRATIONS, INFRA, CI];

/// The index of `source` in the class table.
const SOURCE_INDEX: usize = 6;

/// The bits of `docs` and `tests` (indices 0 and 1 of [`BUILTIN_CLASS_NAMES`]).
const DOCS_BIT: ClassMask = 1;
const TESTS_BIT: ClassMask = 1 << 1;

/// Bits of the six built-in classes that are not `source`.
const NOT_SOURCE_MASK: u64 = (1 << SOURCE_INDEX) - 1;

/// How many classes a policy may have in total: class sets are `u64` bit masks.
pub(crate) const MAX_CLASSES: usize = 64;

/// A set of classes, one bit per class index.
pub(crate) type ClassMask = u64;

/// A class glob that does not compile, and why.
#[derive(Debug)]
pub(crate) struct ClassGlobError {
    pub reason: String,
}

/// All classes of a policy, compiled into one glob set.
#[derive(Debug, Clone)]
pub(crate) struct ClassTable {
    names: Vec<String>,
    set: GlobSet,
    /// For each glob in `set`, the class it belongs to.
    glob_class: Vec<u8>,
}

impl ClassTable {
    /// The built-in classes plus `extensions` (`(name, patterns)` from `[classes]`, which
    /// extend a built-in class of the same name or define a new one).
    pub(crate) fn build(
        extensions: &[(String, Vec<String>)],
    ) -> Result<ClassTable, ClassGlobError> {
        let mut names: Vec<String> = BUILTIN_CLASS_NAMES.iter().map(|&n| n.to_owned()).collect();
        let mut builder = GlobSetBuilder::new();
        let mut glob_class = Vec::new();
        let mut add = |class: usize, pattern: &str| {
            let globs =
                glob::compile(pattern, Flavor::Policy).map_err(|reason| ClassGlobError {
                    reason: format!("`{pattern}`: {reason}"),
                })?;
            for glob in globs {
                builder.add(glob);
                // Classes are fewer than 64 (checked at parse); a marker never collides.
                glob_class.push(u8::try_from(class).unwrap_or(EXECUTED_MARK - 1));
            }
            Ok(())
        };
        for (class, patterns) in BUILTIN_PATTERNS.iter().enumerate() {
            for pattern in patterns.iter() {
                add(class, pattern)?;
            }
        }
        for pattern in EXECUTED {
            add(usize::from(EXECUTED_MARK), pattern)?;
        }
        for (name, patterns) in extensions {
            let class = match names.iter().position(|known| known == name) {
                Some(class) => class,
                None => {
                    names.push(name.clone());
                    names.len() - 1
                }
            };
            for pattern in patterns.iter() {
                add(class, pattern)?;
            }
        }
        let set = builder.build().map_err(|error| ClassGlobError {
            reason: error.to_string().to_lowercase(),
        })?;
        Ok(ClassTable {
            names,
            set,
            glob_class,
        })
    }

    /// A table that classifies every path as `source`; the fallback when even the
    /// built-in class table cannot be built (it always can, a unit test proves it).
    pub(crate) fn source_only() -> ClassTable {
        ClassTable {
            names: BUILTIN_CLASS_NAMES.iter().map(|&n| n.to_owned()).collect(),
            set: GlobSet::empty(),
            glob_class: Vec::new(),
        }
    }

    /// Number of classes, built-ins included.
    pub(crate) fn len(&self) -> usize {
        self.names.len()
    }

    pub(crate) fn names(&self) -> &[String] {
        &self.names
    }

    pub(crate) fn index_of(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|known| known == name)
    }

    /// The classes of a normalised repo-relative path, as rules see them: a file that is
    /// executed ([`EXECUTED`]) is `source`, not `docs` or `tests`.
    pub(crate) fn mask_of(&self, path: &str, scratch: &mut Vec<usize>) -> ClassMask {
        self.classify(path, scratch, true)
    }

    /// The classes of a path by its globs alone (a `conftest.py` stays a test file):
    /// what the acceptance checks count as tests.
    pub(crate) fn mask_by_globs(&self, path: &str, scratch: &mut Vec<usize>) -> ClassMask {
        self.classify(path, scratch, false)
    }

    fn classify(
        &self,
        path: &str,
        scratch: &mut Vec<usize>,
        executed_is_source: bool,
    ) -> ClassMask {
        self.set.matches_into(path, scratch);
        let mut mask: ClassMask = 0;
        let mut executed = false;
        for &glob in scratch.iter() {
            match self.glob_class.get(glob) {
                Some(&EXECUTED_MARK) => executed = true,
                Some(&class) => mask |= 1u64.checked_shl(u32::from(class)).unwrap_or(0),
                None => {}
            }
        }
        let executed = executed && executed_is_source;
        if executed {
            mask &= !(DOCS_BIT | TESTS_BIT);
        }
        if executed || mask & NOT_SOURCE_MASK == 0 {
            mask |= 1 << SOURCE_INDEX;
        }
        mask
    }

    /// The names of the classes in `mask`, in table order.
    pub(crate) fn names_in(&self, mask: ClassMask) -> impl Iterator<Item = &str> {
        self.names
            .iter()
            .enumerate()
            .filter(move |(index, _)| mask_bit(*index) & mask != 0)
            .map(|(_, name)| name.as_str())
    }
}

/// The mask bit of class `index` (0 for an index past the mask width).
pub(crate) fn mask_bit(index: usize) -> ClassMask {
    u32::try_from(index)
        .ok()
        .and_then(|shift| 1u64.checked_shl(shift))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classes(table: &ClassTable, path: &str) -> Vec<String> {
        let mask = table.mask_of(path, &mut Vec::new());
        table.names_in(mask).map(str::to_owned).collect()
    }

    #[test]
    fn builtin_classes() {
        let table = ClassTable::build(&[]).unwrap();
        let cases: &[(&str, &[&str])] = &[
            ("README.md", &["docs"]),
            ("docs/guide/intro.png", &["docs"]),
            ("src/docs/server.rs", &["source"]),
            ("LICENSE-MIT", &["docs"]),
            ("crates/x/tests/it.rs", &["tests"]),
            ("pkg/server_test.go", &["tests"]),
            ("tests/fixtures/Cargo.toml", &["tests", "dependencies"]),
            ("web/src/app.test.tsx", &["tests"]),
            ("app/models/user.spec.ts", &["tests"]),
            ("src/test/java/FooTest.java", &["tests"]),
            ("Cargo.lock", &["dependencies"]),
            ("crates/a/Cargo.toml", &["dependencies"]),
            ("requirements-dev.txt", &["dependencies"]),
            ("services/api/go.sum", &["dependencies"]),
            ("db/migrations/001_init.sql", &["migrations"]),
            ("db/seed/data.sql", &["migrations"]),
            ("app/db/schema.rb", &["migrations"]),
            ("infra/main.tf", &["infra"]),
            ("modules/vpc/variables.tf", &["infra"]),
            ("deploy/k8s/deployment.yaml", &["infra"]),
            ("charts/api/values-prod.yaml", &["infra"]),
            ("services/api/Dockerfile", &["infra"]),
            ("docker-compose.dev.yml", &["infra"]),
            (".github/workflows/ci.yml", &["ci"]),
            (".github/CODEOWNERS", &["ci"]),
            ("docs/CODEOWNERS", &["docs", "ci"]),
            (".flightdeck/policy.toml", &["ci"]),
            ("Jenkinsfile", &["ci"]),
            ("src/main.rs", &["source"]),
            ("Makefile", &["source"]),
            // executed by a test runner, a docs build or a package tool: source, not docs/tests
            ("conftest.py", &["source"]),
            ("tests/conftest.py", &["source"]),
            ("pkg/sub/conftest.py", &["source"]),
            ("docs/conf.py", &["source"]),
            ("docs/source/conf.py", &["source"]),
            ("web/src/__mocks__/fs.js", &["source"]),
            ("setup.py", &["dependencies", "source"]),
            ("tests/fixtures/pkg/setup.py", &["dependencies", "source"]),
            ("tests/fixtures/setup_helpers.py", &["source"]),
            ("tests/fixtures/crate/build.rs", &["source"]),
            ("tests/run.sh", &["source"]),
            ("docs/Makefile", &["source"]),
            ("web/src/setupTests.ts", &["source"]),
            ("test/jest.setup.js", &["source"]),
            ("tests/test_app.py", &["tests"]),
            ("docs/guide.md", &["docs"]),
        ];
        for (path, expected) in cases {
            assert_eq!(classes(&table, path), *expected, "{path}");
        }
    }

    #[test]
    fn extensions_add_to_builtins_and_define_new_classes() {
        let table = ClassTable::build(&[
            ("docs".to_owned(), vec!["guides/**".to_owned()]),
            ("generated".to_owned(), vec!["*.pb.go".to_owned()]),
        ])
        .unwrap();
        assert_eq!(classes(&table, "guides/a.txt"), ["docs"]);
        assert_eq!(classes(&table, "README.md"), ["docs"]);
        assert_eq!(classes(&table, "api/x.pb.go"), ["source", "generated"]);
        assert_eq!(table.len(), 8);
    }

    #[test]
    fn source_only_table_classifies_everything_as_source() {
        let table = ClassTable::source_only();
        assert_eq!(classes(&table, "README.md"), ["source"]);
    }
}
