package config

import (
	"flag"
)

// Overrides are the few settings the command line may override; a flag
// given on the command line wins over the file. Flags not given leave the
// file's value alone, so a flag's empty default never clobbers it.
type Overrides struct {
	fs     *flag.FlagSet
	values map[string]*string // flag name → value
}

// overrideFlags maps each flag to the key it overrides and how to apply it.
// Keep it short: a good default beats a flag.
var overrideFlags = []struct {
	name, path, usage string
	apply             func(c *Config, v string) error // nil error: applied
}{
	{"lower", "lower.interface", "lower NIC the ports sit on (overrides lower.interface)",
		func(c *Config, v string) error { c.Lower.Interface = v; return nil }},
	{"log-format", "log.format", "log format: text or json (overrides log.format)",
		func(c *Config, v string) error {
			f, ok := parseLogFormat(v)
			if !ok {
				return errLogFormat(v)
			}
			c.Log.Format = f
			return nil
		}},
	{"log-level", "log.level", "log level: debug, info, warn or error (overrides log.level)",
		func(c *Config, v string) error {
			l, ok := parseLogLevel(v)
			if !ok {
				return errLogLevel(v)
			}
			c.Log.Level = l
			return nil
		}},
	{"metrics-listen", "metrics.listen", `host:port of the Prometheus endpoint, "" to disable (overrides metrics.listen)`,
		func(c *Config, v string) error { c.Metrics.Listen = v; return nil }},
}

// RegisterFlags defines the override flags (-lower, -log-format,
// -log-level, -metrics-listen) on fs. After fs.Parse, call Apply on the
// loaded Config.
func RegisterFlags(fs *flag.FlagSet) *Overrides {
	o := &Overrides{fs: fs, values: map[string]*string{}}
	for _, f := range overrideFlags {
		o.values[f.name] = fs.String(f.name, "", f.usage)
	}
	return o
}

// Apply sets in c every override given on the command line, then validates
// c again, since a flag can break a rule between fields (-lower naming an
// afpacket port's interface). Errors about a value from a flag name the
// flag in place of the file: "flag -log-format: log.format: …".
func (o *Overrides) Apply(c *Config) error {
	set := map[string]bool{}
	o.fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if c.src == nil {
		c.src = &source{pos: map[string]position{}, flags: map[string]string{}, autoMAC: map[string]bool{}}
	}
	var errs []*FieldError
	for _, f := range overrideFlags {
		if !set[f.name] {
			continue
		}
		c.src.flags[f.path] = f.name
		if err := f.apply(c, *o.values[f.name]); err != nil {
			errs = append(errs, c.src.fieldError(f.path, err))
		}
	}
	errs = append(errs, c.validate()...)
	return joinErrors(errs)
}
