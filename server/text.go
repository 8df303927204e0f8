package server

import (
	"context"
	"strconv"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"perfusion/charting"
)

// maxRequestText bounds one text field of any request. The domain has
// tighter limits for what it stores; this one only keeps a filter or an
// identifier from carrying megabytes.
const maxRequestText = 64 << 10

// Every text in every request meets the record's text rules
// (charting.TextProblem) before a handler sees it: no NUL, no control
// characters except line breaks and tabs in free text (fields named text,
// comment, reason or description). One check at the boundary, for stored
// fields and filters alike, makes the two stores behave the same: a NUL in
// a site filter would otherwise be an Internal error from PostgreSQL (SQLSTATE
// 22021) and a plain miss on SQLite.

func (ic *interceptors) unaryText(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if m, ok := req.(proto.Message); ok {
		if err := checkRequestText(m); err != nil {
			return nil, err
		}
	}
	return handler(ctx, req)
}

func (ic *interceptors) streamText(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	return handler(srv, &textCheckedStream{ServerStream: ss})
}

// textCheckedStream checks each message a client sends on a stream.
type textCheckedStream struct {
	grpc.ServerStream
}

func (s *textCheckedStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	if pm, ok := m.(proto.Message); ok {
		return checkRequestText(pm)
	}
	return nil
}

// checkRequestText returns InvalidArgument naming every text field of m
// that breaks the rules, or nil.
func checkRequestText(m proto.Message) error {
	var v charting.Violations
	walkMessageText(&v, "", m.ProtoReflect())
	if len(v) == 0 {
		return nil
	}
	return invalidStatus(v)
}

func walkMessageText(v *charting.Violations, path string, m protoreflect.Message) {
	m.Range(func(fd protoreflect.FieldDescriptor, val protoreflect.Value) bool {
		name := string(fd.Name())
		field := name
		if path != "" {
			field = path + "." + name
		}
		switch {
		case fd.IsList():
			l := val.List()
			for i := range l.Len() {
				textValue(v, field+"["+strconv.Itoa(i)+"]", name, fd, l.Get(i))
			}
		case fd.IsMap():
			val.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
				key := k.String()
				if p := charting.TextProblem(key, maxRequestText, false); p != "" {
					v.Add(field, "key: %s", p)
					return true
				}
				textValue(v, field+"["+strconv.Quote(key)+"]", name, fd.MapValue(), mv)
				return true
			})
		default:
			textValue(v, field, name, fd, val)
		}
		return len(*v) < 20 // enough to tell the client what is wrong
	})
}

func textValue(v *charting.Violations, field, name string, fd protoreflect.FieldDescriptor, val protoreflect.Value) {
	switch fd.Kind() {
	case protoreflect.StringKind:
		charting.CheckText(v, field, val.String(), maxRequestText, charting.Multiline(name))
	case protoreflect.MessageKind, protoreflect.GroupKind:
		walkMessageText(v, field, val.Message())
	}
}
