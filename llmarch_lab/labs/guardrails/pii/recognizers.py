"""The extra recognizers a tuned configuration adds: honorifics, ages, zips, cards, phones, date-times, cues, titles, addresses."""

from __future__ import annotations

from typing import Any

# -------------------------------------------------------------------------- extra recognizers
#
# Added by name in PiiConfig.extras. Each was written against errors seen on the TRAIN split
# (evaluate(train, DEFAULT).errors), and each keys on a general cue (a context word, an address
# shape), not on a template's wording. Presidio's predefined recognizers stay as they are: these
# only add what they do not cover (honorifics, ages, zip codes, street addresses, and numbers that
# a context word marks as a card or phone but that fail Presidio's stricter checks).
# Context words sit inside the regexes (lookbehinds) rather than in Presidio's `context=` lists:
# Presidio's LemmaContextAwareEnhancer reads spaCy lemmas, which the no_op engine never produces,
# and a lookbehind ties the word to the number it marks instead of to anything within 5 words.

_W = r"[\p{L}\p{M}][\p{L}\p{M}'’.\-]*"              # a word that starts with a letter
_CTX_FLAGS = "(?i)"                                   # context words match in any case
_HONORIFIC = r"(?:(?i:mrs|mr|ms|dr|prof)\.|(?:Mrs|Mr|Ms|Dr|Prof|Miss|Mx)\b)(?=[ \t]+[\p{L}])"
_AGE = (_CTX_FLAGS + r"(?:(?<=\b(?:turned|turn|turning|age of|aged|i'm|i am|he was|she was|is a|is an)\s{1,3})"
        r"\d{1,3}(?!\d|\s*(?:%|percent|dollars|euros|km|kg|minutes|hours|days|weeks|months))"
        r"|\b\d{1,3}(?=\s*-?\s*(?:years?|yrs?)[\s-]*old\b|\s*y/o\b))")
_ZIP = (_CTX_FLAGS + r"(?<=\b(?:zip|zip code|zipcode|postal code|postcode|post code)\s{0,2}(?:is|:|#)?\s{0,3})"
        r"(?-i:[A-Z]\d[A-Z] ?\d[A-Z]\d|\d{3,5}(?:[ -]\d{2,4})?(?: ?[A-Z]{2}\b)?)")
_CARD = (_CTX_FLAGS + r"(?<=\b(?:card|cc|credit card|card number|card no|card #|number is|card:)\s{0,3}[#:]?\s{0,3})"
         r"\d{4}[ -]?\d{4}[ -]?\d{4}(?:[ -]?\d{1,7})?\b")
_DATETIME = r"\b\d{4}-\d{2}-\d{2}(?:[ T]\d{1,2}:\d{2}(?::\d{2})?)?\b"
_NAME_WORD = r"(?!(?i:and|but|or|from|the|a|an|in|at|to|of|is|was|i|my|your|please|here|there)\b)[\p{L}\p{M}][\p{L}\p{M}'’\-]*"
_CAP_WORD = r"\p{Lu}[\p{L}\p{M}'’\-]+"
# Cues for a name: a lowercase name is taken after the cues of the first list when a stop word or
# punctuation ends it ("follow up with monika žilková in a couple of months"); after a kinship
# noun only capitalized words are ("my kid Mario"); a capitalized word that opens the text or a
# line and is addressed ("Warrane, can I ...") or opens the text before a verb said of people
# ("Dexter lives on", "Mourik began writing") is a name. Cues from the TRAIN split's misses.
_NAME_CUES = (r"my name is|name is|name:|i am called|call me|calls me|(?:directed|written|produced|composed) by:?|"
              r"starring|(?:was|is|be|being|were) called|named(?: him| her)?|(?:last|first|family|given) name\??|"
              r"follow up with|shouted at")
_NAME_END = r"(?=[ \t]*(?:$|[\n,.;:!?\"]|(?i:but|and|in|on|at|from|to|for|with|who|is|was|has|had|will)\b))"
_KIN = (r"(?:my|our|his|her|their) (?:kid|son|daughter|wife|husband|brother|sister|mother|father|mom|dad|"
        r"friend|boss|cousin|uncle|aunt|nephew|niece|grandson|granddaughter|partner|neighbou?r)")
_NAME_CUE = (r"(?:(?<=\b(?:Mr|Mrs|Ms|Dr|Prof|Miss|mr|mrs|ms|dr)\.?[ \t])" + _CAP_WORD + r"(?:[ \t]+" + _CAP_WORD + r"){0,2}"
             r"|(?<=\b(?i:" + _NAME_CUES + r")[ \t]{1,8})"
             + _NAME_WORD +
             r"(?:[ \t]+(?:\p{Lu}\.|" + _NAME_WORD + r")){0,2}" + _NAME_END +
             r"|(?<=\b(?i:" + _KIN + r")[ \t])" + _CAP_WORD + r"(?:[ \t]+" + _CAP_WORD + r")?"
             r"|(?:(?<=\A)|(?<=\n))" + _CAP_WORD + r"(?=,[ \t]+(?i:can|could|would|will|please|do|did|are|have)\b)"
             r"|\A" + _CAP_WORD + r"(?=[ \t]+(?:lives|lived|began|shouted|spent|had given|is from|is very)\b))")
# A nationality or religion after "I am", "we are proud": a word with a demonym ending; the -ian
# words that name a job or a diet are not one.
_NRP = (r"(?<=\b(?i:i am|i'm|we are|we're|they are|he is|she is)(?:[ \t]+(?i:proud|very|so|also|half))?[ \t]+)"
        r"(?!(?i:vegetarian|vegan|human|veteran|librarian|musician|technician|physician|politician|historian|"
        r"comedian|civilian|guardian|custodian|pedestrian|median|orphans?)\b)"
        r"(?i:\p{L}{3,}(?:ians?|eans?|ese|eses|ish|is|ans))\b")
# A job title: the words after "work(ed) for/at ... as", or the headline line right above a
# résumé's "Personal Info:" section.
_TITLE_WORD = r"\p{L}[\p{L}\p{M}'’\-]*"
_TITLE = (r"(?:(?<=\b(?i:work|worked|working|employed|job)\b[^\n.!?]{0,60}?[ \t](?i:as)[ \t](?:(?i:an?)[ \t])?)"
          + _TITLE_WORD + r"(?:[ \t]+" + _TITLE_WORD + r"){0,4}"
          r"(?=[ \t]*(?:[,.;!?]|$|(?i:but|and|for|at|in|since|until)\b))"
          r"|^[ \t]*\K" + _TITLE_WORD + r"(?:,?[ \t]+" + _TITLE_WORD + r"){0,6}"
          r"(?=[ \t]*\n(?:[ \t]*\n)*[ \t]*(?i:personal info|contact info|contact details)[ \t]*:))")
_PLACE_CUE = (r"(?<=\b(?i:flew to|fly to|moved (?:here )?from|arrived (?:at|in)|travell?ing to|travel to|lives in|live in|"
              r"living in|based in|located in|originally from|born in|relocated to|moved to|grew up in|i am in|i'm in|"
              r"home city|city of)[ \t])"
              + _CAP_WORD + r"(?:[ \t]+" + _CAP_WORD + r"){0,3}")
_ORG_SUFFIX = (r"(?:Inc\.?|Ltd\.?|LLC|L\.L\.C\.|PLC|GmbH|AG|S\.A\.|Corp\.?|Corporation|Company|Co\.|Group|Partners|"
               r"Associates|Holdings|Systems|Technologies|Consulting|Solutions|Labs|Ventures|and Sons|& Sons)")
_ORG_CUE = (r"(?:(?<=\b(?i:work for|worked for|working for|work at|worked at|employed by|employed at|joined|year at|"
            r"ceo of|cto of|founder of|founders of|support|invested in|acquired by)[ \t])" + _CAP_WORD +
            r"(?:[ \t]+(?:" + _CAP_WORD + r"|&|and)){0,3}(?<!\band)(?<!&)"
            r"|\b" + _CAP_WORD + r"(?:[ \t]+" + _CAP_WORD + r"){0,3}[ \t,]+" + _ORG_SUFFIX + r"(?=[\s.,;:!?)]|$))")
_PHONE_CTX = (r"(?:phone|mobile|cell|tel|telephone|fax|desk|office|call me (?:on|at)|reach me (?:on|at)|"
              r"answering at|messages to|registered|whatsapp|sms|text me at|number)")
_PHONE_NUM = r"(?:\+\d{1,3}[\s.-]?)?(?:\(\d{1,4}\)[\s.-]?|\(0\)\d{1,4}[\s.-]?)?\d{2,5}(?:[\s.-]\d{2,5}){0,4}(?:\s?x\d{1,5})?"
_PHONE = (_CTX_FLAGS + r"(?:(?<=\b" + _PHONE_CTX + r"\s{0,3}[:#]?\s{0,3})" + _PHONE_NUM +
          r"|" + _PHONE_NUM + r"(?=[ \t]*(?:-|\b)(?:office|fax|mobile|cell|desk|home|work)\b))")


def _addressee_re(re):
    """The lines right above an address are its addressee: a name, a job title, a company (each
    PII here). Up to three short lines of words (no digits, no "label:" line) are taken, reported
    as PERSON, the usual case; a "Name: X" or "Billing address: X" label is left out."""
    return re.compile(rf"^[ \t>?]*(?:[\p{{L}} ]{{1,20}}:[ \t]*)?({_W}(?:[ \t,&]+{_W}){{0,5}})[ \t]*$")


def addressee(text: str, start: int, addressee_re) -> list[tuple[int, int]]:
    """(start, end) of the addressee lines above the address at `start` (see _addressee_re)."""
    found, pos, blank = [], text.rfind("\n", 0, start), 0
    if text[pos + 1:start].strip(" \t>?"):  # the address does not start its line
        return found
    while pos > 0 and len(found) < 3:
        prev = text.rfind("\n", 0, pos) + 1
        line = text[prev:pos]
        if not line.strip(" \t>?"):
            blank += 1
            if blank > 1:
                break
        else:
            m = addressee_re.match(line)
            if m is None or ":" in m.group(1):
                break
            found.append((prev + m.start(1), prev + m.end(1)))
        pos = prev - 1
    return found


def _address_tail_res(re):
    """(cont, cont_blank, inline, tail_zip, stop): what may extend an address after its anchor."""
    # What may follow an anchor: up to four short segments (city, region, country, zip), each on
    # a new line or after a comma, made of at most five words and an optional trailing zip.
    w0 = r"[\p{L}\p{M}][\p{L}\p{M}'’\-]*\.?"  # one word; a word ending in "." ends the segment
    seg = rf"(?:{w0}|\(\p{{L}}+\))(?:(?<!\.)[ \t]+(?:{w0}|\(\p{{L}}+\))){{0,4}}"
    zip_ = r"(?:\d{3,6}(?:-\d{3,4})?|[A-Z]\d[A-Z] ?\d[A-Z]\d)"
    cont_re = re.compile(rf"(?:[ \t]*(?:\n[ \t>?]*|,[ \t]*|\n[ \t>?]*,[ \t]*))(?:{seg}(?:[ \t]+{zip_})?|{zip_}|\d{{2}})")
    # A blank line may separate the city from a last "Country 12345" line.
    cont_blank_re = re.compile(rf"[ \t]*\n[ \t]*\n[ \t>?]*{seg}[ \t]+{zip_}(?=[ \t]*(?:\n|$|[.,]))")
    inline_re = re.compile(rf"[ \t]+(?:\p{{Lu}}[\p{{L}}\p{{M}}'’.\-]*)(?:[ \t]+\p{{Lu}}[\p{{L}}\p{{M}}'’.\-]*){{0,2}}(?:[ \t]+{zip_})?(?=[ \t]*(?:\n|$|[.,]))")
    tail_zip_re = re.compile(rf"[ \t]+{zip_}\b")
    stop = re.compile(r"(?i)^[\s,>?]*(?:phone|e-?mail|website|fax|mobile|desk|name|date|when|where|address|"
                      r"in case|please|it |i |we |they |he |she |and |or |for |to |if |is |was |the |this |"
                      r"that |with |has |have |can |could |would )")
    return cont_re, cont_blank_re, inline_re, tail_zip_re, stop


def _address_recognizer():
    """A street-address block recognizer (LOCATION).

    Presidio has no address recognizer and spaCy's GPE/FAC find only place names, so an address
    comes back as scattered pieces. This finds an anchor (a house number next to street words, a
    street-type word next to a number, a PO box or a military address) and extends it over the
    unit, city, region, country and zip that follow on the same or the next few lines."""
    import regex as re
    from presidio_analyzer import LocalRecognizer, RecognizerResult

    # Street-type words: unambiguous ones in any case, everyday words ("Way", "Point") capitalized.
    street_type = (r"(?:(?i:street|st\.|road|rd\.?|avenue|ave\.?|drive|lane|boulevard|blvd\.?|terrace|highway|"
                   r"hwy|parkway)|(?:St|Dr|Ln|Close|Way|Square|Place|Pl|Court|Ct|Crescent|Mall|Loop|Bridge|Bypass|"
                   r"Route|Row|Walk|Hills?|Greens?|Coves?|Rapids|Point|Isle|Flats|Union|Gateway|Crossroad|"
                   r"Extensions?|Pass|Port|Pike|Plaza|Park|Summit|Forks|Dam|Fort|Mews|Grove|Gardens|Courts))")
    street_head = (r"(?i:rue|rua|r\.|via|viale|vicolo|piazza|avenue|avenida|avda\.|av\.?|ul\.|c/|calle|paseo|"
                   r"boulevard|trg|strada|largo|platz|plac|aleja|al\.)")
    # A word whose ending marks a street in Nordic, Germanic, Baltic, Finnish, Hungarian, Dutch...
    street_word = (r"[\p{L}\p{M}'’.\-]*(?i:vej|vegur|veien|vei|gade|gata|gatan|gate|stræde|straede|stræti|straeti|"
                   r"braut|katu|kuja|tie|tien|polku|strasse|straße|str\.|gasse|weg|laan|straat|plein|baan|dreef|"
                   r"steeg|u\.|utca|út|útja|tér|rkp\.|sor|ulica|ulice|iela|tänav|allé|alle)")
    num = r"\d{1,6}[A-Za-z]?"
    # Words of a street name: capitalized words, numbers and the lowercase particles street names
    # use ("Via delle Coste", "Rua do Paseo"); a lowercase everyday word ends the name.
    aw = (rf"(?:\p{{Lu}}[\p{{L}}\p{{M}}'’.\-]*|{num}\.?|(?:de|del|della|delle|dei|dos|das|do|da|di|des|la|le|les|van|"
          rf"von|der|den|du|y|e|el|al|u\.|utca|tér|út|útja|rkp\.|str\.)(?![\p{{L}}]))")
    words = rf"{aw}(?:[ \t]+{aw}){{0,5}}"
    unit = rf"(?:[,]?[ \t]*(?:\n[ \t>?]*)?(?i:apt\.?|apartment|suite|ste\.?|unit|flat|box|p\.o\. box)[ \t]*{num})"
    anchors = [
        rf"(?i:the corner of)[ \t]+(?:[^\s]+[ \t]+){{0,5}}?(?i:and)[ \t]+{_W}(?:[ \t]+{_W}){{0,3}}?(?=[ \t]*(?:[.,;?!\n]|$))",
        r"(?i:(?:psc|unit|cmr)[ \t]+\d{3,5},?[ \t]+box[ \t]+\d{3,5}\s*\n?\s*[adf]po[ \t]+a[aep][ \t]+\d{5})",
        rf"(?i:us[ncg]?[sv]c?[ \t]+{_W}\s*\n?\s*fpo[ \t]+a[aep][ \t]+\d{{5}})",
        r"(?i:p\.?o\.? box[ \t]+\d{1,6})",
        rf"\b{num}(?:[ \t]+{num})?[ \t]+(?:{aw}[ \t]+){{0,4}}?{street_type}\b(?:[ \t]+(?:West|East|North|South)\b)?",
        rf"\b(?:{num}[ \t]+){{0,2}}{street_head}[ \t]+{words}(?=[\s,.;?!)]|$)",
        rf"\b(?:{num}[ \t]+){{0,2}}(?:{_W}[ \t]+){{0,2}}{street_word}[ \t]+{num}\.?(?=[\s,.;?!)]|$)",
        rf"\b{num}(?:[ \t]+{num})?[ \t]+{_W}(?:[ \t]+{_W}){{0,3}}[ \t]+{num}\.?(?=[ \t]*(?:\n|,|$|[ \t]+(?i:apt|suite)))",
    ]
    anchor_re = re.compile("|".join(f"(?:{a})" for a in anchors), re.MULTILINE)
    unit_re = re.compile(unit)
    cont_re, cont_blank_re, inline_re, tail_zip_re, stop = _address_tail_res(re)
    addressee_re = _addressee_re(re)

    class AddressRecognizer(LocalRecognizer):
        def load(self) -> None:
            pass

        def _result(self, entity: str, start: int, end: int, score: float) -> RecognizerResult:
            return RecognizerResult(entity, start, end, score,
                                    recognition_metadata={RecognizerResult.RECOGNIZER_NAME_KEY: self.name,
                                                          RecognizerResult.RECOGNIZER_IDENTIFIER_KEY: self.id})

        def analyze(self, text, entities, nlp_artifacts=None):
            out = []
            for m in anchor_re.finditer(text):
                start, end = m.span()
                out.extend(self._result("PERSON", a, b, 0.5) for a, b in addressee(text, start, addressee_re))
                while (u := unit_re.match(text, end)) is not None:
                    end = u.end()
                if (z := inline_re.match(text, end)) is not None and end > start:
                    end = z.end()
                for _ in range(4):
                    c = cont_re.match(text, end)
                    if c is None or stop.match(text[end:c.end()]):
                        break
                    end = c.end()
                if (c := cont_blank_re.match(text, end)) is not None and not stop.match(text[end:c.end()]):
                    end = c.end()
                if (z := tail_zip_re.match(text, end)) is not None:
                    end = z.end()
                while end > start and text[end - 1] in " \t\n,.;:?!>":
                    end -= 1
                out.append(self._result("LOCATION", start, end, 0.6))
            return out

    return AddressRecognizer(supported_entities=["LOCATION", "PERSON"], name="AddressRecognizer")


def extra_recognizers() -> dict[str, Any]:
    """Recognizers added by name in a PiiConfig's `extras` (built fresh for each analyzer)."""
    import regex as re
    from presidio_analyzer import Pattern, PatternRecognizer

    flags = re.MULTILINE  # case matters in these patterns (Presidio's default adds IGNORECASE)

    def pattern(name: str, entity: str, regex: str, score: float) -> PatternRecognizer:
        return PatternRecognizer(supported_entity=entity, name=name, patterns=[Pattern(name, regex, score)],
                                 global_regex_flags=flags)

    return {
        "honorific": pattern("HonorificRecognizer", "TITLE", _HONORIFIC, 0.6),
        "age": pattern("AgeRecognizer", "AGE", _AGE, 0.6),
        "zip": pattern("ZipCodeRecognizer", "ZIP_CODE", _ZIP, 0.6),
        "card_context": pattern("CardContextRecognizer", "CREDIT_CARD", _CARD, 0.6),
        "phone_context": pattern("PhoneContextRecognizer", "PHONE_NUMBER", _PHONE, 0.6),
        "datetime": pattern("DateTimeRecognizer", "DATE_TIME", _DATETIME, 0.65),
        "name_cue": pattern("NameCueRecognizer", "PERSON", _NAME_CUE, 0.55),
        "nrp_cue": pattern("NrpCueRecognizer", "NRP", _NRP, 0.55),
        "title_cue": pattern("TitleCueRecognizer", "TITLE", _TITLE, 0.55),
        "place_cue": pattern("PlaceCueRecognizer", "LOCATION", _PLACE_CUE, 0.55),
        "org_cue": pattern("OrgCueRecognizer", "ORGANIZATION", _ORG_CUE, 0.55),
        "address": _address_recognizer(),
    }
