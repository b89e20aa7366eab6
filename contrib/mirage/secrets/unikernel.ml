(* unikernel.ml: read the TLS key and certificate from the secret volume at
   start, fail to boot without them, then read the site from the data
   volume. Both volumes are Mirage_kv.RO (tar_kv_ro, see config.ml). The
   key never goes to the log: only its size does. *)

open Lwt.Syntax

module Main (Site : Mirage_kv.RO) (Keys : Mirage_kv.RO) = struct
  (* [secret keys name] is the content of [name] on the secret volume; a
     missing or empty file stops the unikernel: it must not serve without
     its keys. *)
  let secret keys name =
    let* r = Keys.get keys (Mirage_kv.Key.v name) in
    match r with
    | Ok "" -> Fmt.failwith "secret volume: %s is empty" name
    | Ok data -> Lwt.return data
    | Error e -> Fmt.failwith "secret volume: %s: %a" name Keys.pp_error e

  (* [is_pem data] is a cheap check that a file is PEM, so that a volume
     served without decryption (ciphertext) is refused at boot. *)
  let is_pem data =
    let prefix = "-----BEGIN " in
    String.length data > String.length prefix
    && String.sub data 0 (String.length prefix) = prefix

  let start site keys =
    let* key = secret keys "tls/server.key" in
    let* cert = secret keys "tls/server.pem" in
    if not (is_pem key && is_pem cert) then
      failwith "secret volume: tls/server.key or tls/server.pem is not PEM";
    Logs.info (fun m ->
        m "secret volume: tls/server.key (%d bytes), tls/server.pem (%d bytes)"
          (String.length key) (String.length cert));
    (* A real site decodes them here, e.g. with ocaml-x509 and ocaml-tls:
       X509.Private_key.decode_pem key, X509.Certificate.decode_pem_multiple
       cert, then Tls.Config.server ~certificates:(`Single (certs, key)). *)
    let* index = Site.get site (Mirage_kv.Key.v "index.html") in
    (match index with
    | Ok page -> Logs.info (fun m -> m "index.html: %d bytes" (String.length page))
    | Error e -> Logs.warn (fun m -> m "index.html: %a" Site.pp_error e));
    Lwt.return_unit
end
