// composecheck runs the reference implementations that Docker itself uses on the deployment files, so that the
// tests can check them without a Docker engine:
//
//	composecheck config [-env-file FILE]... [-profile NAME]... COMPOSE_FILE
//	    Loads COMPOSE_FILE with compose-go (the Compose Specification's loader, as `docker compose config`
//	    does): schema validation, interpolation from the given env files only (never the process environment
//	    or a .env beside the file), profiles ("*" for all), consistency checks (depends_on, networks, volumes).
//	    Prints the resolved project as JSON; any error exits 1 with the loader's message.
//	    A service's env_file is checked for syntax but its contents are not read (they are the app's settings,
//	    not the compose file's).
//	composecheck dockerignore DOCKERIGNORE PATH...
//	    Reads DOCKERIGNORE with moby/patternmatcher (as BuildKit does) and prints "excluded PATH" or
//	    "included PATH" for each slash-separated PATH relative to the build context.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
)

type repeated []string

func (r *repeated) String() string     { return fmt.Sprint(*r) }
func (r *repeated) Set(v string) error { *r = append(*r, v); return nil }

func config(args []string) error {
	flags := flag.NewFlagSet("config", flag.ContinueOnError)
	var envFiles, profiles repeated
	flags.Var(&envFiles, "env-file", "file of VAR=value lines used for interpolation (repeatable)")
	flags.Var(&profiles, "profile", "profile to enable (repeatable; * enables all)")
	if err := flags.Parse(args); err != nil {
		return err
	}
	if flags.NArg() != 1 {
		return errors.New("config: give exactly one compose file")
	}
	file, err := filepath.Abs(flags.Arg(0))
	if err != nil {
		return err
	}
	if len(envFiles) == 0 {
		// Without this, WithDotEnv would read the .env beside the compose file: a developer's real secrets.
		return errors.New("config: give at least one -env-file")
	}
	options, err := cli.NewProjectOptions(
		[]string{file},
		cli.WithName("switchboard"),
		cli.WithWorkingDirectory(filepath.Dir(file)),
		cli.WithEnvFiles(envFiles...),
		cli.WithDotEnv,
		cli.WithProfiles(profiles),
		cli.WithoutEnvironmentResolution,
	)
	if err != nil {
		return err
	}
	project, err := options.LoadProject(context.Background())
	if err != nil {
		return err
	}
	out, err := project.MarshalJSON()
	if err != nil {
		return err
	}
	_, err = fmt.Println(string(out))
	return err
}

func dockerignore(args []string) error {
	if len(args) < 2 {
		return errors.New("dockerignore: give the file and at least one path")
	}
	handle, err := os.Open(args[0])
	if err != nil {
		return err
	}
	defer handle.Close()
	patterns, err := ignorefile.ReadAll(handle)
	if err != nil {
		return err
	}
	matcher, err := patternmatcher.New(patterns)
	if err != nil {
		return err
	}
	for _, path := range args[1:] {
		excluded, err := matcher.MatchesOrParentMatches(filepath.FromSlash(path))
		if err != nil {
			return err
		}
		verdict := "included"
		if excluded {
			verdict = "excluded"
		}
		fmt.Println(verdict, path)
	}
	return nil
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: composecheck config|dockerignore ...")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "config":
		err = config(os.Args[2:])
	case "dockerignore":
		err = dockerignore(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "composecheck:", err)
		os.Exit(1)
	}
}
