package feeds

import (
	"strings"

	"portcullis/posture"
)

// Subject is an RFC 9493 subject identifier, or an SSF complex subject
// (whose members are simple subjects describing one principal).
type Subject struct {
	Format      string    `json:"format"`
	Email       string    `json:"email,omitempty"`
	URI         string    `json:"uri,omitempty"`
	ID          string    `json:"id,omitempty"`
	Iss         string    `json:"iss,omitempty"`
	Sub         string    `json:"sub,omitempty"`
	PhoneNumber string    `json:"phone_number,omitempty"`
	URL         string    `json:"url,omitempty"`
	Identifiers []Subject `json:"identifiers,omitempty"`

	User        *Subject `json:"user,omitempty"`
	Device      *Subject `json:"device,omitempty"`
	Session     *Subject `json:"session,omitempty"`
	Application *Subject `json:"application,omitempty"`
	Tenant      *Subject `json:"tenant,omitempty"`
	OrgUnit     *Subject `json:"org_unit,omitempty"`
	Group       *Subject `json:"group,omitempty"`
}

// subjects resolves subject identifiers to the gateway's users, devices
// and sessions.
type subjects struct {
	userFrom posture.UserFrom
	issuers  []string // iss values whose iss_sub names our users
	deviceCA string   // "" : devices cannot be resolved
}

// resolved is what a subject names, as far as the gateway knows it.
type resolved struct {
	user    string
	device  posture.DeviceKey // zero if none
	session string
}

func (r resolved) empty() bool { return r.user == "" && r.device.ID == "" && r.session == "" }

// resolve maps a subject. A simple subject is taken as a user (or, with
// asDevice, as a device); a complex one by its members. Unknown formats
// resolve to nothing.
func (sr *subjects) resolve(s *Subject, asDevice bool) resolved {
	var r resolved
	if s == nil {
		return r
	}
	if s.Format == "complex" {
		r.user = sr.user(s.User)
		r.device = sr.device(s.Device)
		if s.Session != nil && s.Session.Format == "opaque" {
			r.session = s.Session.ID
		}
		return r
	}
	if asDevice {
		r.device = sr.device(s)
	} else {
		r.user = sr.user(s)
	}
	return r
}

func (sr *subjects) user(s *Subject) string {
	if s == nil {
		return ""
	}
	var u string
	switch s.Format {
	case "email":
		if sr.userFrom == posture.UserFromEmail {
			u = s.Email
		}
	case "account":
		if sr.userFrom == posture.UserFromEmail {
			if rest, ok := strings.CutPrefix(s.URI, "acct:"); ok {
				u = rest
			}
		}
	case "iss_sub":
		if sr.userFrom == posture.UserFromSub && contains(sr.issuers, s.Iss) {
			u = s.Sub
		}
	case "opaque":
		if sr.userFrom == posture.UserFromSub {
			u = s.ID
		}
	case "aliases":
		for i := range s.Identifiers {
			if s.Identifiers[i].Format == "aliases" {
				continue // aliases do not nest
			}
			if u = sr.user(&s.Identifiers[i]); u != "" {
				break
			}
		}
	}
	return strings.ToLower(strings.TrimSpace(u))
}

func (sr *subjects) device(s *Subject) posture.DeviceKey {
	if s == nil || sr.deviceCA == "" {
		return posture.DeviceKey{}
	}
	var id string
	switch s.Format {
	case "iss_sub":
		id = s.Sub
	case "opaque":
		id = s.ID
	case "uri":
		id = s.URI
	case "did":
		id = s.URL
	case "aliases":
		for i := range s.Identifiers {
			if s.Identifiers[i].Format == "aliases" {
				continue
			}
			if k := sr.device(&s.Identifiers[i]); k.ID != "" {
				return k
			}
		}
	}
	if id == "" {
		return posture.DeviceKey{}
	}
	return posture.DeviceKey{CA: sr.deviceCA, ID: id}
}

// criticalUnknown reports whether a complex subject carries a member that
// the transmitter declares critical and that the receiver does not act on
// (SSF: such an event must be discarded).
func criticalUnknown(s *Subject, critical []string) bool {
	if s == nil || s.Format != "complex" {
		return false
	}
	for _, m := range []struct {
		name string
		v    *Subject
	}{{"application", s.Application}, {"tenant", s.Tenant}, {"org_unit", s.OrgUnit}, {"group", s.Group}} {
		if m.v != nil && contains(critical, m.name) {
			return true
		}
	}
	return false
}
